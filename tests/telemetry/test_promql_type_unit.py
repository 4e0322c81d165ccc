"""Type-and-unit labels (`__type__`, `__unit__`) in replay.

A Prometheus 3.x run with `--enable-feature=type-and-unit-labels` stores these labels on every
series, and its documentation says PromQL handles them "the same way `__name__` is handled":
dropped by the operations that drop the name. Expected results are worked out by hand below.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.telemetry.replay import ReplaySource

T0 = 1_790_000_400
SERIES = [
    ("req_total", {"__type__": "counter", "__unit__": "requests", "pod": "a"}, [(T0 - 60, 40.0), (T0, 100.0)]),
    ("req_total", {"__type__": "counter", "__unit__": "requests", "pod": "b"}, [(T0 - 60, 10.0), (T0, 20.0)]),
    ("mem", {"__type__": "gauge", "__unit__": "bytes", "pod": "a"}, [(T0, 5.0)]),
]


@pytest.fixture(scope="module")
def src() -> ReplaySource:
    rows = [(pd.Timestamp(t, unit="s", tz="UTC"), m, json.dumps(ls, sort_keys=True), v)
            for m, ls, pts in SERIES for t, v in pts]
    return ReplaySource.from_frame(pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"]), promql="3")


def _vec(src: ReplaySource, q: str) -> dict[str, float]:
    data = src.query_raw(q, T0)
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["result"]}


def _k(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def test_selector_keeps_them_and_name_dropping_operations_drop_them(src: ReplaySource) -> None:
    """A plain selector returns all labels. `req_total * 2` drops __name__, __type__ and __unit__:
    {pod=a} 200, {pod=b} 40; `-mem` is {pod=a} -5; `sum without (pod)` drops them too: 100+20."""
    assert _vec(src, 'mem') == {_k(__name__="mem", __type__="gauge", __unit__="bytes", pod="a"): 5.0}
    assert _vec(src, "req_total * 2") == {_k(pod="a"): 200.0, _k(pod="b"): 40.0}
    assert _vec(src, "-mem") == {_k(pod="a"): -5.0}
    assert _vec(src, "sum without (pod) (req_total)") == {"{}": 120.0}


def test_set_operators_match_without_them(src: ReplaySource) -> None:
    """(req_total * 2) and mem: the left side lost its type labels, mem still has gauge/bytes;
    set operators ignore them with the name, so pod=a matches: {pod=a} 200."""
    assert _vec(src, "(req_total * 2) and mem") == {_k(pod="a"): 200.0}


def test_arithmetic_matches_on_them(src: ReplaySource) -> None:
    """`req_total + mem` matches one-to-one on all labels but the name; pod=a's counter/requests
    differs from mem's gauge/bytes, so nothing matches."""
    assert _vec(src, "req_total + mem") == {}
