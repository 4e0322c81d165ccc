"""Fill modifiers with group_left/group_right (Prometheus 3.x).

Expected results are worked out by hand from the Prometheus operator documentation ("Filling in
missing matches"): a stand-in carries only the match group's labels — one series per group on
the "many" side, no `group_left(label)` labels from a missing "one" side. Prometheus swaps the
sides of a group_right match before it fills, so there fill_left fills the right-hand side.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.telemetry.replay import ReplaySource

T0 = 1_790_000_400
SERIES = [
    ("req", {"method": "get", "status": "200"}, 10.0),
    ("req", {"method": "post", "status": "200"}, 20.0),
    ("req", {"method": "get", "status": "500"}, 30.0),
    ("lim", {"status": "200", "owner": "web"}, 100.0),
    ("lim", {"status": "404", "owner": "edge"}, 400.0),
]


@pytest.fixture(scope="module")
def src() -> ReplaySource:
    rows = [(pd.Timestamp(T0, unit="s", tz="UTC"), m, json.dumps(ls, sort_keys=True), v) for m, ls, v in SERIES]
    return ReplaySource.from_frame(pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"]), promql="3")


def _vec(src: ReplaySource, q: str) -> dict[str, float]:
    data = src.query_raw(q, T0)
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["result"]}


def _k(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def test_group_left_fill_right_fills_the_one_side(src: ReplaySource) -> None:
    """req + on(status) group_left fill_right(0) lim: status 200 matches (10+100, 20+100);
    status 500 has no lim, so lim is 0 there: 30 + 0 = 30. status 404 (only in lim) stays out."""
    assert _vec(src, "req + on(status) group_left fill_right(0) lim") == {
        _k(method="get", status="200"): 110.0, _k(method="post", status="200"): 120.0,
        _k(method="get", status="500"): 30.0}


def test_group_left_fill_left_adds_one_series_per_group(src: ReplaySource) -> None:
    """fill_left(1): status 404 has lim but no req, so one stand-in req{status="404"} = 1 is
    added: 1 + 400 = 401, labelled with the match labels only."""
    assert _vec(src, "req + on(status) group_left fill_left(1) lim") == {
        _k(method="get", status="200"): 110.0, _k(method="post", status="200"): 120.0,
        _k(status="404"): 401.0}


def test_included_labels_are_not_filled(src: ReplaySource) -> None:
    """group_left(owner) copies owner from lim; the filled lim of status 500 has none, so that
    result has no owner: {get, 500} 30."""
    assert _vec(src, "req + on(status) group_left(owner) fill_right(0) lim") == {
        _k(method="get", status="200", owner="web"): 110.0, _k(method="post", status="200", owner="web"): 120.0,
        _k(method="get", status="500"): 30.0}


def test_group_right_swaps_which_side_each_fill_fills(src: ReplaySource) -> None:
    """lim * on(status) group_right fill_left(2) req: the right side (req) is filled for the
    lim-only status 404: 400 * 2 = 800 as {status="404"}; 200 matches: 100*10, 100*20.
    fill_right(3) fills the left (lim) for status 500: 3 * 30 = 90."""
    assert _vec(src, "lim * on(status) group_right fill_left(2) req") == {
        _k(method="get", status="200"): 1000.0, _k(method="post", status="200"): 2000.0,
        _k(status="404"): 800.0}
    assert _vec(src, "lim * on(status) group_right fill_right(3) req") == {
        _k(method="get", status="200"): 1000.0, _k(method="post", status="200"): 2000.0,
        _k(method="get", status="500"): 90.0}
