"""Fast checks of the replay engine on hand-made data (no Prometheus needed).

Expected values are worked out by hand from Prometheus's documented semantics; the slow
differential module checks the same engine against a real Prometheus.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.promql.values import format_value
from incidentbook.telemetry.replay import ReplaySource

T0 = 1_790_000_000


def frame(series: dict[tuple[str, str], list[tuple[float, float]]]) -> pd.DataFrame:
    rows = []
    for (metric, labels), points in series.items():
        for t, v in points:
            rows.append((pd.Timestamp(t, unit="s", tz="UTC"), metric, labels, v))
    return pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])


def lab(**kw: str) -> str:
    return json.dumps(kw, sort_keys=True, separators=(",", ":"))


@pytest.fixture
# Hand-worked with Prometheus 2.x semantics (closed windows); test_promql_v3.py covers 3.x.
def src() -> ReplaySource:
    counter = [(T0 + 15 * i, 15.0 * i) for i in range(41)]  # +1/s for 10 minutes
    reset = [(T0 + 15 * i, 15.0 * i if i < 20 else 15.0 * (i - 20)) for i in range(41)]
    buckets = {("lat_bucket", lab(le=le)): [(T0 + 15 * i, c * i) for i in range(41)]
               for le, c in (("1", 10.0), ("2", 20.0), ("+Inf", 20.0))}
    return ReplaySource.from_frame(promql="2", metrics=frame({
        ("req_total", lab(job="api")): counter,
        ("req_total", lab(job="web")): reset,
        ("temp", lab(room="a")): [(T0, 20.0)],
        ("temp", lab(room="b")): [(T0, 21.0)],
        **buckets,
    }))


def instant(src: ReplaySource, q: str, t: float) -> dict[str, float]:
    data = src.query_raw(q, t)
    assert data["resultType"] == "vector"
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["result"]}


def test_rate_of_a_steady_counter_is_exact(src: ReplaySource) -> None:
    got = instant(src, 'rate(req_total{job="api"}[5m])', T0 + 600)
    assert got == {'{"job": "api"}': 1.0}


def test_increase_sees_through_a_counter_reset(src: ReplaySource) -> None:
    # The window holds samples 10..30 (150 → 285, reset to 0, → 150), spanning exactly 300 s, so
    # no extrapolation: increase = (150 - 150) + 285 carried over the reset. The 15 s step in
    # which the reset happened counts as 0, as in Prometheus.
    got = instant(src, 'increase(req_total{job="web"}[5m])', T0 + 30 * 15)
    assert got == {'{"job": "web"}': pytest.approx(285.0)}


def test_histogram_quantile_interpolates_inside_the_bucket(src: ReplaySource) -> None:
    # Per second: 10 obs <= 1, 20 obs <= 2, none above. The 75th percentile is rank 15 of 20,
    # halfway through the (1, 2] bucket.
    got = instant(src, "histogram_quantile(0.75, rate(lat_bucket[5m]))", T0 + 600)
    assert got == {"{}": pytest.approx(1.5)}
    assert instant(src, "histogram_quantile(0.25, rate(lat_bucket[5m]))", T0 + 600) == {"{}": pytest.approx(0.5)}


def test_staleness_lookback_is_five_minutes_inclusive(src: ReplaySource) -> None:
    assert instant(src, "temp", T0 + 300) == {'{"__name__": "temp", "room": "a"}': 20.0,
                                              '{"__name__": "temp", "room": "b"}': 21.0}
    assert instant(src, "temp", T0 + 300.001) == {}


def test_range_results_are_sorted_by_labels_and_drop_the_metric_name(src: ReplaySource) -> None:
    data = src.query_range_raw("temp * 2", T0, T0 + 60, 30)
    assert data["resultType"] == "matrix"
    assert [s["metric"] for s in data["result"]] == [{"room": "a"}, {"room": "b"}]
    assert data["result"][0]["values"] == [[T0, "40"], [T0 + 30, "40"], [T0 + 60, "40"]]


def test_empty_results_have_the_api_shape(src: ReplaySource) -> None:
    assert src.query_range_raw("nothing_here", T0, T0 + 60, 15) == {"resultType": "matrix", "result": []}
    assert src.query_raw("nothing_here", T0) == {"resultType": "vector", "result": []}
    df = src.query_range("nothing_here", T0, T0 + 60, 15)
    assert df.empty and list(df.columns) == ["timestamp", "value"]


def test_scalars_and_strings(src: ReplaySource) -> None:
    assert src.query_raw("1 + 2 * 3", T0) == {"resultType": "scalar", "result": [T0, "7"]}
    assert src.query_raw('"hi"', T0 + 0.5) == {"resultType": "string", "result": [T0 + 0.5, "hi"]}
    assert src.query_range_raw("time()", T0, T0 + 30, 15)["result"] == [
        {"metric": {}, "values": [[T0, str(T0)], [T0 + 15, str(T0 + 15)], [T0 + 30, str(T0 + 30)]]}]


@pytest.mark.parametrize("q", ["sum(", "rate(req_total)", "req_total{", "1 > 2", "nosuch_fn(req_total)"])
def test_malformed_promql_is_bad_input_with_the_parser_message(src: ReplaySource, q: str) -> None:
    with pytest.raises(BadInput, match="bad PromQL") as e:
        src.query_raw(q, T0)
    assert not isinstance(e.value, UnsupportedQuery)


@pytest.mark.parametrize("q", [
    "histogram_count(temp)",
    "histogram_fraction(0, 1, temp)",
])
def test_unsupported_features_say_so_instead_of_guessing(src: ReplaySource, q: str) -> None:
    with pytest.raises(UnsupportedQuery, match="not supported in replay"):
        src.query_range_raw(q, T0, T0 + 600, 60)


def test_more_than_11000_points_is_refused_like_prometheus(src: ReplaySource) -> None:
    with pytest.raises(BadInput, match="11,000 points"):
        src.query_range_raw("temp", T0, T0 + 11_000, 1)
    assert len(src.query_range_raw("temp", T0, T0 + 10_999, 1)["result"]) == 2


def test_range_vector_in_a_range_query_is_refused(src: ReplaySource) -> None:
    with pytest.raises(BadInput, match="range vector"):
        src.query_range_raw("temp[5m]", T0, T0 + 60, 15)


def test_duplicate_label_sets_after_dropping_the_name_are_an_error() -> None:
    s = ReplaySource.from_frame(frame({("a", lab(x="1")): [(T0, 1.0)], ("b", lab(x="1")): [(T0, 2.0)]}))
    with pytest.raises(BadInput, match="same labelset"):
        s.query_raw('{__name__=~"a|b"} * 2', T0)
    assert instant(s, 'sum by (x) ({__name__=~"a|b"})', T0) == {'{"x": "1"}': 3.0}


def test_label_replace_expands_like_go(src: ReplaySource) -> None:
    got = src.query_raw('label_replace(temp, "dst", "$1-${1}x-$1x", "room", "(.*)")', T0)
    assert sorted(r["metric"]["dst"] for r in got["result"]) == ["a-ax-", "b-bx-"]


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (0.5, "0.5"), (1e6, "1000000"), (1e20, "100000000000000000000"), (1e21, "1e+21"),
    (1.5e-7, "1.5e-07"), (0.000001, "0.000001"), (-2.25, "-2.25"), (float("nan"), "NaN"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (0.1 + 0.2, "0.30000000000000004"),
])
def test_values_are_formatted_as_prometheus_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text


def test_dataframe_shape_follows_the_metrics_contract(src: ReplaySource) -> None:
    df = src.query_range("req_total", T0, T0 + 60, 30)
    assert list(df.columns) == ["timestamp", "__name__", "job", "value"]
    assert str(df["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert df["job"].tolist() == ["api"] * 3 + ["web"] * 3
    assert df["value"].tolist() == [0.0, 30.0, 60.0, 0.0, 30.0, 60.0]
    one = src.query('sum(rate(req_total{job="api"}[5m]))', T0 + 600)
    assert one["value"].tolist() == [1.0] and list(one.columns) == ["timestamp", "value"]


def test_counters_holding_infinity_fall_back_to_exact_window_sums() -> None:
    # An infinite sample makes running reset sums meaningless; the engine must notice and
    # compute each window on its own, so windows after the +Inf still get finite rates.
    pts = [(T0 + 15 * i, float(i)) for i in range(40)]
    pts[5] = (T0 + 75, float("inf"))
    s = ReplaySource.from_frame(frame({("c_total", lab(a="1")): pts}))
    assert not s.store.resets_finite
    assert instant(s, "increase(c_total[1m])", T0 + 15 * 39) == {'{"a": "1"}': 4.0}  # samples 35..39 span the whole minute
    assert instant(s, "irate(c_total[1m])", T0 + 15 * 39) == {'{"a": "1"}': pytest.approx(1 / 15)}


def test_instant_query_of_a_range_selector_returns_raw_samples(src: ReplaySource) -> None:
    data = src.query_raw('req_total{job="api"}[1m]', T0 + 60)
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"] == [[T0 + 15 * i, str(15 * i)] for i in range(5)]
    df = src.query('req_total{job="api"}[1m]', T0 + 60)
    assert df["value"].tolist() == [0.0, 15.0, 30.0, 45.0, 60.0]
