"""`info()` in replay (Prometheus 3.x, behind `promql-experimental-functions`).

Expected results are worked out by hand in each docstring from the Prometheus documentation of
`info()`: identifying labels are `instance` and `job`, `target_info` by default, data labels of
the newest matching info series are added, a data matcher that refuses "" drops unmatched series.
"""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest

from incidentbook.errors import BadInput
from incidentbook.telemetry.replay import ReplaySource

T0 = 1_790_000_400
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
ON = ["promql-experimental-functions"]

SERIES = [
    # rps = 10·i at T0 + 60·i, i = 0..4, for two instances of job "api"
    ("rps", {"instance": "a", "job": "api", "code": "200"}, [(T0 + 60 * i, 10.0 * i) for i in range(5)]),
    ("rps", {"instance": "b", "job": "api", "code": "200"}, [(T0 + 60 * i, 1.0 + i) for i in range(5)]),
    ("rps", {"instance": "c", "job": "other"}, [(T0 + 60 * i, 7.0) for i in range(5)]),
    # instance a's target_info changes version at T0+120 (the old one goes stale there)
    ("target_info", {"instance": "a", "job": "api", "version": "v1", "region": "eu"},
     [(T0, 1.0), (T0 + 60, 1.0), (T0 + 120, STALE)]),
    ("target_info", {"instance": "a", "job": "api", "version": "v2", "region": "eu"},
     [(T0 + 120, 1.0), (T0 + 180, 1.0), (T0 + 240, 1.0)]),
    ("target_info", {"instance": "b", "job": "api", "version": "v1", "region": "us"},
     [(T0 + 60 * i, 1.0) for i in range(5)]),
    ("build_info", {"instance": "a", "job": "api", "commit": "abc"}, [(T0 + 60 * i, 1.0) for i in range(5)]),
    ("build_info", {"instance": "b", "job": "api", "region": "ap"}, [(T0 + 60 * i, 1.0) for i in range(5)]),
]


def _frame() -> pd.DataFrame:
    rows = [(pd.Timestamp(t, unit="s", tz="UTC"), m, json.dumps(ls, sort_keys=True), v)
            for m, ls, pts in SERIES for t, v in pts]
    return pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])


@pytest.fixture(scope="module")
def src() -> ReplaySource:
    return ReplaySource.from_frame(_frame(), promql="3", features=ON)


def _vec(src: ReplaySource, q: str, t: float) -> dict[str, float]:
    data = src.query_raw(q, t)
    assert data["resultType"] == "vector", data
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["result"]}


def _key(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def test_all_data_labels_of_target_info(src: ReplaySource) -> None:
    """At T0+60: rps{a} = 10 gains version=v1, region=eu from target_info{a} (instance and job
    match); rps{b} = 2 gains v1, us; rps{c} has no target_info and stays as it is (no selector,
    so no data matcher refuses the empty value)."""
    assert _vec(src, "info(rps)", T0 + 60) == {
        _key(__name__="rps", instance="a", job="api", code="200", version="v1", region="eu"): 10.0,
        _key(__name__="rps", instance="b", job="api", code="200", version="v1", region="us"): 2.0,
        _key(__name__="rps", instance="c", job="other"): 7.0,
    }


def test_data_label_matcher_picks_labels_and_drops_the_unmatched(src: ReplaySource) -> None:
    """{version=~".+"} adds only `version`, and drops rps{c} (no info series, and the matcher
    refuses ""). {version="v1"} at T0+180: instance a's info is v2 then, so rps{a} is dropped."""
    assert _vec(src, 'info(rps, {version=~".+"})', T0 + 60) == {
        _key(__name__="rps", instance="a", job="api", code="200", version="v1"): 10.0,
        _key(__name__="rps", instance="b", job="api", code="200", version="v1"): 2.0,
    }
    assert _vec(src, 'info(rps, {version="v1"})', T0 + 180) == {
        _key(__name__="rps", instance="b", job="api", code="200", version="v1"): 4.0,
    }


def test_info_series_change_over_time_in_a_range_query(src: ReplaySource) -> None:
    """rps{a} from T0 to T0+240 step 60: v1 at T0, T0+60 (values 0, 10); the stale marker at
    T0+120 ends v1 and v2 starts there, so v2 at T0+120..240 (values 20, 30, 40)."""
    data = src.query_range_raw('info(rps{instance="a"}, {version=~".+"})', T0, T0 + 240, 60)
    got = {r["metric"]["version"]: [(t - T0, float(v)) for t, v in r["values"]] for r in data["result"]}
    assert got == {"v1": [(0, 0.0), (60, 10.0)], "v2": [(120, 20.0), (180, 30.0), (240, 40.0)]}


def test_name_matcher_and_conflicts(src: ReplaySource) -> None:
    """{__name__="build_info"} adds commit=abc to rps{a} and region=ap to rps{b}.
    {__name__=~".+_info"} on rps{b}: target_info says region=us, build_info region=ap — a
    conflict, an error. On rps{a} both agree (region only from target_info): v1, eu, abc."""
    assert _vec(src, 'info(rps{instance!="c"}, {__name__="build_info"})', T0 + 60) == {
        _key(__name__="rps", instance="a", job="api", code="200", commit="abc"): 10.0,
        _key(__name__="rps", instance="b", job="api", code="200", region="ap"): 2.0,
    }
    assert _vec(src, 'info(rps{instance="a"}, {__name__=~".+_info"})', T0 + 60) == {
        _key(__name__="rps", instance="a", job="api", code="200", version="v1", region="eu", commit="abc"): 10.0,
    }
    with pytest.raises(BadInput, match="conflicting label: region"):
        src.query_raw('info(rps{instance="b"}, {__name__=~".+_info"})', T0 + 60)


def test_info_series_pass_through_and_offset_is_followed(src: ReplaySource) -> None:
    """info(target_info) leaves target_info series alone (they are the info series).
    `info(rps{instance="a"} offset 2m)` at T0+240 reads rps at T0+120 (20) and target_info as of
    T0+120 too: v2."""
    got = _vec(src, 'info(target_info{instance="b"})', T0 + 60)
    assert got == {_key(__name__="target_info", instance="b", job="api", version="v1", region="us"): 1.0}
    assert _vec(src, 'info(rps{instance="a"} offset 2m, {version=~".+"})', T0 + 240) == {
        _key(__name__="rps", instance="a", job="api", code="200", version="v2"): 20.0,
    }


def test_matchers_accepting_empty_are_allowed(src: ReplaySource) -> None:
    """{nothing=~".*"} accepts "": no info series has `nothing`, so rps{c} stays unchanged."""
    assert _vec(src, 'info(rps{instance="c"}, {nothing=~".*"})', T0 + 60) == {
        _key(__name__="rps", instance="c", job="other"): 7.0,
    }


def test_off_by_default_as_in_prometheus() -> None:
    """Prometheus refuses info() unless --enable-feature=promql-experimental-functions."""
    with pytest.raises(BadInput, match='function "info" is not enabled'):
        ReplaySource.from_frame(_frame(), promql="3").query_raw("info(rps)", T0 + 60)


def test_text_that_only_looks_like_info_is_untouched(src: ReplaySource) -> None:
    """A label value spelling `info(x, {…})` is data: the query still means what it says (no
    series has that value, so the answer is empty); `info` as a label name is just a label."""
    assert _vec(src, 'rps{code="info(rps, {version=~\\".*\\"})"}', T0 + 60) == {}
    assert _vec(src, 'sum by (info) (rps{instance="c"})', T0 + 60) == {"{}": 7.0}
    # The placeholder matcher cannot be smuggled in to change which info series enrich.
    assert _vec(src, 'info(rps{instance="c"}, {__incidentbook_info_selector__="x"})', T0 + 60) == {
        _key(__name__="rps", instance="c", job="other"): 7.0,
    }
