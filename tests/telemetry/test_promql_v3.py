"""Replay's Prometheus 3.x semantics (and where 2.x differs), on small hand-made data.

Each expected value is worked out by hand in the test's docstring from the Prometheus
documentation and the 3.0 migration guide (left-open windows, the rate extrapolation order,
RE2 regexes with `.` matching newlines, Kahan sums). No Prometheus 3.x binary exists here;
the 2.x side is also checked against a real Prometheus 2.42 in test_promql_differential.py.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from incidentbook.errors import BadInput, ConfigError, UnsupportedQuery
from incidentbook.telemetry.bundle import write_bundle
from incidentbook.telemetry.replay import ReplaySource, version_of

# A multiple of 60 s, so 1m subquery steps fall on T0 + 60·i.
T0 = 1_790_000_400
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def frame(series: list[tuple[str, dict[str, str], list[tuple[float, float]]]]) -> pd.DataFrame:
    rows = [(pd.Timestamp(t, unit="s", tz="UTC"), metric, json.dumps(labels, sort_keys=True), v)
            for metric, labels, points in series for t, v in points]
    return pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])


SERIES = [
    # x = i at T0 + 60·i, i = 0..10
    ("x", {}, [(T0 + 60 * i, float(i)) for i in range(11)]),
    # a counter with two samples late in a 5m window: 25 at T0+200, 55 at T0+260
    ("c_total", {}, [(T0 + 200, 25.0), (T0 + 260, 55.0)]),
    ("once", {}, [(T0, 1.0)]),
    ("late", {}, [(T0 + 420, 2.0)]),
    ("w", {"l": "abc"}, [(T0, 1.0)]),
    ("w", {"l": "äbc"}, [(T0, 1.0)]),
    ("w", {"l": "١٢"}, [(T0, 1.0)]),
    ("w", {"l": "12"}, [(T0, 1.0)]),
    ("w", {"l": "a\nb"}, [(T0, 1.0)]),
    ("k", {"i": "1"}, [(T0, 1e100)]),
    ("k", {"i": "2"}, [(T0, 1.0)]),
    ("k", {"i": "3"}, [(T0, -1e100)]),
    ("big", {"i": "1"}, [(T0, 1.7e308)]),
    ("big", {"i": "2"}, [(T0, 1.7e308)]),
    ("bigt", {}, [(T0 - 30, 1.7e308), (T0, 1.7e308)]),
    ("n", {"i": "1"}, [(T0, float("nan"))]),
    ("n", {"i": "2"}, [(T0, 1.0)]),
    ("n", {"i": "3"}, [(T0, 3.0)]),
    ("h_bucket", {"le": "1", "j": "a"}, [(T0, 1.0)]),
    ("h_bucket", {"le": "+Inf", "j": "a"}, [(T0, 2.0)]),
    ("g_bucket", {"le": "1", "j": "a"}, [(T0, 1.0)]),
    ("g_bucket", {"le": "+Inf", "j": "a"}, [(T0, 2.0)]),
    ("s", {}, [(T0 + 60, 1.0), (T0 + 120, 3.0), (T0 + 180, 2.0), (T0 + 240, 10.0)]),
    ("gone", {}, [(T0, 1.0), (T0 + 60, STALE)]),
]


@pytest.fixture(scope="module")
def v3() -> ReplaySource:
    return ReplaySource.from_frame(frame(SERIES), promql="3")


@pytest.fixture(scope="module")
def v2() -> ReplaySource:
    return ReplaySource.from_frame(frame(SERIES), promql="2")


def values(src: ReplaySource, q: str, t: float) -> dict[str, float]:
    data = src.query_raw(q, t)
    assert data["resultType"] == "vector", data
    return {json.dumps(r["metric"], sort_keys=True, ensure_ascii=False): float(r["value"][1]) for r in data["result"]}


def one(src: ReplaySource, q: str, t: float) -> float:
    got = values(src, q, t)
    assert len(got) == 1, got
    return next(iter(got.values()))


# ------------------------------------------------------------------ windows and lookback
def test_range_windows_are_left_open_in_3_and_closed_in_2(v3: ReplaySource, v2: ReplaySource) -> None:
    """count_over_time(x[2m]) at T0+120: 3.x counts (T0, T0+120] = samples at +60, +120 → 2;
    2.x counts [T0, T0+120] → 3."""
    assert one(v3, "count_over_time(x[2m])", T0 + 120) == 2
    assert one(v2, "count_over_time(x[2m])", T0 + 120) == 3


def test_lookback_is_left_open_in_3(v3: ReplaySource, v2: ReplaySource) -> None:
    """`once` has one sample at T0. At T0+300 it is exactly 5m old: outside 3.x's (t-5m, t],
    inside 2.x's [t-5m, t]."""
    assert values(v3, "once", T0 + 300) == {}
    assert one(v2, "once", T0 + 300) == 1
    assert one(v3, "once", T0 + 299) == 1


def test_rate_extrapolation_clamps_to_zero_after_the_threshold_test_in_3(v3: ReplaySource,
                                                                        v2: ReplaySource) -> None:
    """increase(c_total[5m]) at T0+300 with samples 25 @ T0+200 and 55 @ T0+260.
    Increase 30 over a sampled 60 s (one interval, so threshold 66 s, half-interval 30 s);
    end gap 40 s < 66 → extrapolate 40 s. Start gap 200 s; the zero point is 60·25/30 = 50 s back.
    2.x: min(200, 50) = 50 < 66 → 50 s: 30 · (60+50+40)/60 = 75.
    3.x: 200 ≥ 66 → 30 s, then min(30, 50) = 30: 30 · (60+30+40)/60 = 65."""
    assert one(v2, "increase(c_total[5m])", T0 + 300) == pytest.approx(75)
    assert one(v3, "increase(c_total[5m])", T0 + 300) == pytest.approx(65)


# ------------------------------------------------------------------------------ subqueries
def test_subquery_steps_align_to_absolute_time_and_windows_follow_the_version(v3: ReplaySource,
                                                                              v2: ReplaySource) -> None:
    """x[3m:1m] at T0+600: inner steps at multiples of 60 s. 3.x keeps (T0+420, T0+600] →
    steps +480, +540, +600 → x = 8, 9, 10; 2.x keeps [T0+420, T0+600] → 7..10."""
    assert one(v3, "count_over_time(x[3m:1m])", T0 + 600) == 3
    assert one(v3, "min_over_time(x[3m:1m])", T0 + 600) == 8
    assert one(v2, "count_over_time(x[3m:1m])", T0 + 600) == 4
    data = v3.query_raw("x[3m:1m]", T0 + 600)
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"] == [[T0 + 480, "8"], [T0 + 540, "9"], [T0 + 600, "10"]]


def test_subquery_of_a_range_function_and_nested_subqueries(v3: ReplaySource) -> None:
    """deriv(x[5m]) is 1/60 per second everywhere (x grows by 1 a minute), so its max over a
    10m subquery is 1/60; nested max_over_time of x over 2m then 4m at T0+600 is x(T0+600) = 10."""
    assert one(v3, "max_over_time(deriv(x[5m])[10m:1m])", T0 + 600) == pytest.approx(1 / 60)
    assert one(v3, "max_over_time(max_over_time(x[2m:1m])[4m:1m])", T0 + 600) == 10


def test_subquery_offset_and_at(v3: ReplaySource) -> None:
    """last_over_time(x[3m:1m] offset 2m) at T0+600 is the inner value at T0+480 = 8;
    `@ T0+300` pins it to x(T0+300) = 5 whatever the evaluation time; @ start() in a range
    query is the query start."""
    assert one(v3, "last_over_time(x[3m:1m] offset 2m)", T0 + 600) == 8
    assert one(v3, f"last_over_time(x[3m:1m] @ {T0 + 300})", T0 + 600) == 5
    data = v3.query_range_raw("last_over_time(x[3m:1m] @ start())", T0 + 240, T0 + 600, 120)
    assert [v for _, v in data["result"][0]["values"]] == ["4", "4", "4", "4"]


def test_subquery_in_a_range_query(v3: ReplaySource) -> None:
    """max_over_time(x[2m:1m]) from T0+300 to T0+600 every minute is x at each step: 5..10."""
    data = v3.query_range_raw("max_over_time(x[2m:1m])", T0 + 300, T0 + 600, 60)
    assert [float(v) for _, v in data["result"][0]["values"]] == [5, 6, 7, 8, 9, 10]


def test_at_and_offset_inside_rate_and_parenthesised_ranges(v3: ReplaySource) -> None:
    """rate(x[5m] @ T0+600): window (T0+300, T0+600] holds x = 6..10 spanning 240 s; the edges
    are one interval or less away, so it extrapolates to the full 300 s: rate = 1/60."""
    assert one(v3, f"rate(x[5m] @ {T0 + 600})", T0 + 60) == pytest.approx(1 / 60)
    assert one(v3, "rate((x[5m]))", T0 + 600) == pytest.approx(1 / 60)
    assert one(v3, "max_over_time(x[2m] offset 1m)", T0 + 600) == 9


# ----------------------------------------------------------------------------- functions
def test_double_exponential_smoothing_and_holt_winters(v3: ReplaySource, v2: ReplaySource) -> None:
    """s = 1, 3, 2 in the window (T0, T0+180]; sf = tf = 0.5. Start: level 1, trend 3-1 = 2.
    Sample 3: level .5·3 + .5·(1+2) = 3. Sample 2: trend .5·(3-1) + .5·2 = 2,
    level .5·2 + .5·(3+2) = 3.5."""
    assert one(v3, "double_exponential_smoothing(s[3m], 0.5, 0.5)", T0 + 180) == 3.5
    assert one(v2, "holt_winters(s[3m], 0.5, 0.5)", T0 + 180) == 3.5
    with pytest.raises(BadInput, match='unknown function with name "holt_winters"'):
        v3.query_raw("holt_winters(s[3m], 0.5, 0.5)", T0 + 180)
    with pytest.raises(BadInput, match="unknown function"):
        v2.query_raw("double_exponential_smoothing(s[3m], 0.5, 0.5)", T0 + 180)
    with pytest.raises(BadInput, match="smoothing factor"):
        v3.query_raw("double_exponential_smoothing(s[3m], 1, 0.5)", T0 + 180)


def test_mad_and_ts_of_over_time(v3: ReplaySource) -> None:
    """s = 1, 3, 2, 10 at T0+60..240: median 2.5, deviations 1.5, .5, .5, 7.5 → MAD 1.
    The maximum 10 is at T0+240, the minimum 1 at T0+60; first_over_time keeps the name.
    A NaN sample in the window makes the MAD NaN."""
    assert one(v3, "mad_over_time(s[4m])", T0 + 240) == 1
    assert one(v3, "ts_of_max_over_time(s[4m])", T0 + 240) == T0 + 240
    assert one(v3, "ts_of_min_over_time(s[4m])", T0 + 240) == T0 + 60
    assert values(v3, "first_over_time(s[4m])", T0 + 240) == {'{"__name__": "s"}': 1.0}
    assert values(v3, 'mad_over_time(n{i="1"}[1m])', T0) == {'{"i": "1"}': pytest.approx(float("nan"), nan_ok=True)}


def test_functions_new_in_3_are_unknown_in_2(v2: ReplaySource) -> None:
    for q in ("limitk(1, n)", 'sort_by_label(n, "i")', "mad_over_time(s[4m])", "ts_of_max_over_time(s[4m])"):
        with pytest.raises(BadInput, match="unknown function"):
            v2.query_raw(q, T0)


def test_limitk_and_sort_by_label(v3: ReplaySource) -> None:
    """limitk(2, n) keeps two of the three series, values untouched; sort_by_label orders by the
    label in natural order ("12" before "abc"), sort_by_label_desc the reverse."""
    got = v3.query_raw("limitk(2, n)", T0)["result"]
    assert len(got) == 2 and all(r["metric"]["__name__"] == "n" for r in got)
    order = [r["metric"]["i"] for r in v3.query_raw('sort_by_label_desc(n, "i")', T0)["result"]]
    assert order == ["3", "2", "1"]
    order = [r["metric"]["l"] for r in v3.query_raw('sort_by_label(w{l=~"12|abc"}, "l")', T0)["result"]]
    assert order == ["12", "abc"]


# ------------------------------------------------------------------------- regex (RE2)
def test_regex_classes_are_ascii_like_re2(v3: ReplaySource) -> None:
    """\\w+ matches "abc" and "12" only: not "äbc" or Arabic-Indic digits (Python's re would)."""
    assert one(v3, 'count(w{l=~"\\\\w+"})', T0) == 2
    assert one(v3, 'count(w{l=~"\\\\d+"})', T0) == 1


def test_case_insensitive_flag_and_anchoring(v3: ReplaySource) -> None:
    """(?i)ABC matches "abc"; matchers are anchored, so "b" alone matches nothing."""
    assert one(v3, 'count(w{l=~"(?i)ABC"})', T0) == 1
    assert values(v3, 'w{l=~"b"}', T0) == {}


def test_dot_matches_newline_in_3_only(v3: ReplaySource, v2: ReplaySource) -> None:
    """3.x compiles matchers as ^(?s:re)$, so "a.b" matches "a\\nb"; 2.x as ^(?:re)$, so not."""
    assert one(v3, 'count(w{l=~"a.b"})', T0) == 1
    assert values(v2, 'count(w{l=~"a.b"})', T0) == {}


def test_bad_regex_names_the_matcher(v3: ReplaySource) -> None:
    with pytest.raises(BadInput, match="invalid regular expression"):
        v3.query_raw('w{l=~"a**"}', T0)
    with pytest.raises(BadInput, match="regex"):
        v3.query_raw('w{l=~"(a)\\\\1"}', T0)  # backreferences are not RE2


# ------------------------------------------------------------------------------ numerics
def test_sum_is_kahan_compensated_in_3(v3: ReplaySource, v2: ReplaySource) -> None:
    """1e100 + 1 - 1e100: compensated (3.x) gives 1, plain addition (2.x's sum) gives 0."""
    assert one(v3, "sum(k)", T0) == 1
    assert one(v2, "sum(k)", T0) == 0


def test_avg_near_the_float_maximum_does_not_overflow(v3: ReplaySource, v2: ReplaySource) -> None:
    """avg of 1.7e308 and 1.7e308 is 1.7e308, though their sum overflows."""
    assert one(v3, "avg(big)", T0) == 1.7e308
    assert one(v2, "avg(big)", T0) == 1.7e308
    assert one(v3, "avg_over_time(bigt[1m])", T0) == 1.7e308


def test_sort_puts_nan_last(v3: ReplaySource) -> None:
    """sort and sort_desc both put the NaN series last."""
    assert [r["value"][1] for r in v3.query_raw("sort(n)", T0)["result"]] == ["1", "3", "NaN"]
    assert [r["value"][1] for r in v3.query_raw("sort_desc(n)", T0)["result"]] == ["3", "1", "NaN"]


def test_topk_nan_is_an_error_in_3(v3: ReplaySource, v2: ReplaySource) -> None:
    with pytest.raises(BadInput, match="Parameter value is NaN"):
        v3.query_raw("topk(NaN, n)", T0)
    with pytest.raises(BadInput, match="NaN overflows int64"):  # as Prometheus 2.42 answers
        v2.query_raw("topk(NaN, n)", T0)
    with pytest.raises(BadInput, match="overflows int64"):
        v3.query_raw("topk(1e19, n)", T0)


def test_histogram_quantile_refuses_colliding_label_sets(v3: ReplaySource) -> None:
    """h_bucket and g_bucket have the same labels once the name is dropped: Prometheus errors
    rather than adding their buckets."""
    with pytest.raises(BadInput, match="same labelset"):
        v3.query_raw('histogram_quantile(0.5, {__name__=~".+_bucket"})', T0)
    assert one(v3, "histogram_quantile(0.5, h_bucket)", T0) == 1


def test_or_with_an_empty_side(v3: ReplaySource) -> None:
    assert one(v3, "once or nothing", T0) == 1
    assert one(v3, "nothing or once", T0) == 1
    assert values(v3, "nothing or nothing_else", T0) == {}
    data = v3.query_range_raw("nothing or once", T0, T0 + 120, 60)
    assert len(data["result"]) == 1


def test_stale_markers_end_a_series(v3: ReplaySource) -> None:
    """`gone` is 1 at T0 then a stale marker at T0+60: from T0+60 the instant selector has no
    value (not NaN), and range functions skip the marker."""
    assert one(v3, "gone", T0 + 30) == 1
    assert values(v3, "gone", T0 + 90) == {}
    assert one(v3, "count_over_time(gone[5m])", T0 + 90) == 1


def test_native_histogram_functions_say_so(v3: ReplaySource) -> None:
    with pytest.raises(UnsupportedQuery, match="histogram_count"):
        v3.query_raw("histogram_count(h_bucket)", T0)


# ------------------------------------------------------------------ choosing the version
def _bundle(tmp_path: Path, prometheus: dict[str, str] | None) -> Path:
    manifest = {"window": {"start": pd.Timestamp(T0, unit="s", tz="UTC"),
                           "end": pd.Timestamp(T0 + 600, unit="s", tz="UTC")}}
    if prometheus is not None:
        manifest["prometheus"] = prometheus
    return write_bundle(tmp_path / "b", manifest, frame([SERIES[2]]))


def test_version_comes_from_the_bundle_then_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "incidentbook.toml").write_text('[replay]\npromql = "2"\n', encoding="utf-8")
    monkeypatch.chdir(ws)
    plain = _bundle(tmp_path / "p", None)
    assert ReplaySource(plain).promql == "2"  # the workspace setting
    assert values(ReplaySource(plain), "once", T0 + 300) == {'{"__name__": "once"}': 1.0}
    recorded = _bundle(tmp_path / "r", {"version": "3.1.0"})
    assert ReplaySource(recorded).promql == "3"  # the bundle's own Prometheus wins
    assert ReplaySource(recorded, promql="2").promql == "2"  # an explicit choice wins over both


def test_bad_version_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "incidentbook.toml").write_text('[replay]\npromql = "4"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="replay.promql"):
        ReplaySource(_bundle(tmp_path, None))
    with pytest.raises(BadInput, match="not known"):
        ReplaySource.from_frame(frame([SERIES[2]]), promql="4")


@pytest.mark.parametrize("text,want", [("2.42.0", "2"), ("v3.1.0", "3"), ("3.0.0-rc.1", "3"),
                                       ("1.8.2", "2"), ("", None), ("main", None), (None, None)])
def test_version_of(text: str | None, want: str | None) -> None:
    assert version_of(text) == want


def test_query_shape_functions_of_3(v3: ReplaySource, v2: ReplaySource) -> None:
    """step() is the query step (0 for an instant query), range() end - start, start()/end()
    the query's bounds; min_of/max_of pick between two scalars. From T0 to T0+120 every 60 s:
    step 60, range 120."""
    data = v3.query_range_raw("vector(step()) + vector(range())", T0, T0 + 120, 60)
    assert [v for _, v in data["result"][0]["values"]] == ["180", "180", "180"]
    assert v3.query_raw("step()", T0)["result"][1] == "0"
    assert v3.query_raw("end() - start()", T0)["result"][1] == "0"
    assert v3.query_raw("max_of(2, min_of(5, 3))", T0)["result"][1] == "3"
    with pytest.raises(BadInput, match="unknown function"):
        v2.query_raw("step()", T0)
    assert v2.query_raw("once @ start()", T0)["result"][0]["value"][1] == "1"  # @ start() is 2.x too


def test_name_collisions_are_checked_per_step_in_3(v3: ReplaySource, v2: ReplaySource) -> None:
    """-{__name__=~"x|once"} at T0: both lose their names and collide: an error in both versions.
    -{__name__=~"once|late"} from T0 to T0+600 every 60 s: `once` (sample at T0) is seen up to
    T0+240, `late` (sample at T0+420) from T0+420, never at the same step. 3.x checks each step
    and answers one series -1 ×5 then -2 ×4; 2.x rejects any collision in the whole result."""
    with pytest.raises(BadInput, match="same labelset"):
        v3.query_raw('-{__name__=~"x|once"}', T0)
    data = v3.query_range_raw('-{__name__=~"once|late"}', T0, T0 + 600, 60)
    assert [v for _, v in data["result"][0]["values"]] == ["-1"] * 5 + ["-2"] * 4
    with pytest.raises(BadInput, match="same labelset"):
        v2.query_range_raw('-{__name__=~"once|late"}', T0, T0 + 600, 60)


def test_histogram_quantiles_labels_each_quantile(v3: ReplaySource) -> None:
    """h_bucket: 1 observation ≤ 1, 2 in all. q=0.5 → rank 1, inside the first bucket [0, 1]:
    1; q=1 → rank 2, in the +Inf bucket: the largest finite bound, 1. Labelled q="0.5", "1.0"."""
    got = values(v3, 'histogram_quantiles(h_bucket, "q", 0.5, 1)', T0)
    assert got == {'{"j": "a", "q": "0.5"}': 1.0, '{"j": "a", "q": "1.0"}': 1.0}
    with pytest.raises(BadInput, match="same labelset"):
        v3.query_raw('histogram_quantiles(h_bucket, "q", 0.5, 0.5)', T0)  # the same quantile twice


def test_ambiguous_matches_fail_even_when_a_comparison_filters_them(v3: ReplaySource, v2: ReplaySource) -> None:
    """n (three series) > on() once: many-to-one without group_left. 3.x refuses it even though
    `>` keeps only the series above 1; 2.x checks only the pairs the filter keeps (one)."""
    with pytest.raises(BadInput, match="multiple matches"):
        v3.query_raw("n > on() once", T0)
    assert len(v2.query_raw("n > on() once", T0)["result"]) == 1


def test_fill_modifiers_stand_in_for_missing_matches(v3: ReplaySource, v2: ReplaySource) -> None:
    """n{i="2"} (1) and n{i="3"} (3) against x at T0 (0) via on(i): x has no `i`, so nothing
    matches. fill_right(10): each n gets x = 10 → 11 and 13; fill_left(1) alone adds, for the
    single right-hand group, a left of 1 → 1 + 0 = 1, labelled by x without its name ({})."""
    got = values(v3, 'n{i=~"2|3"} + on(i) fill_right(10) x', T0)
    assert got == {'{"i": "2"}': 11.0, '{"i": "3"}': 13.0}
    assert values(v3, 'n{i=~"2|3"} + on(i) fill_left(1) x', T0) == {"{}": 1.0}
    with pytest.raises(BadInput, match="set operator"):
        v3.query_raw("n and fill(0) x", T0)
    with pytest.raises(BadInput):
        v2.query_raw("n + fill(0) x", T0)
