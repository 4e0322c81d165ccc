"""Duration arithmetic in ranges and offsets (Prometheus 3.x feature `promql-duration-expr`).

Expected values are worked out by hand in each docstring from the Prometheus documentation of
duration expressions: a bare number is seconds, `step()`/`range()` are the query's step and
end − start (0 for an instant query), `offset` takes one sign and one parenthesised expression
or duration function, and operators after that belong to the query.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from incidentbook.errors import BadInput, ConfigError
from incidentbook.telemetry.bundle import write_bundle
from incidentbook.telemetry.promql.durations import rewrite
from incidentbook.telemetry.replay import ReplaySource

T0 = 1_790_000_400
ON = ["promql-duration-expr"]


MANIFEST = {"window": {"start": pd.Timestamp(T0, unit="s", tz="UTC"),
                       "end": pd.Timestamp(T0 + 1000, unit="s", tz="UTC")}}


def _frame() -> pd.DataFrame:
    # x = i at T0 + 10·i, i = 0..100
    rows = [(pd.Timestamp(T0 + 10 * i, unit="s", tz="UTC"), "x", "{}", float(i)) for i in range(101)]
    return pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])


@pytest.fixture(scope="module")
def on() -> ReplaySource:
    return ReplaySource.from_frame(_frame(), promql="3", features=ON)


def _one(src: ReplaySource, q: str, t: float) -> tuple[dict[str, str], float]:
    data = src.query_raw(q, t)
    assert data["resultType"] == "vector" and len(data["result"]) == 1, data
    return data["result"][0]["metric"], float(data["result"][0]["value"][1])


def test_range_arithmetic_matches_the_literal(on: ReplaySource) -> None:
    """At T0+500, count_over_time(x[30s]) counts (T0+470, T0+500] = samples 48, 49, 50 → 3.
    Each expression below is 30 s: 20s+10s; 60*0.5 (bare numbers are seconds); 1m/2; 1m30s % 1m
    (90 mod 60); -30s+1m; (5s+5s)*3; 1.5*20s."""
    for rng in ["30s", "20s+10s", "60*0.5", "1m/2", "1m30s % 1m", "-30s+1m", "(5s+5s)*3", "1.5*20s"]:
        assert _one(on, f"count_over_time(x[{rng}])", T0 + 500)[1] == 3, rng


def test_subquery_range_and_step(on: ReplaySource) -> None:
    """sum_over_time(x[20s+10s:5s*2]) at T0+500: a 30 s subquery at 10 s steps takes the
    steps T0+480, +490, +500 (left-open window), values 48 + 49 + 50 = 147."""
    assert _one(on, "sum_over_time(x[20s+10s:5s*2])", T0 + 500)[1] == 147


def test_offset_takes_one_term_and_the_rest_is_arithmetic(on: ReplaySource) -> None:
    """x at T0+500 is 50.
    `x offset (10 + 10)` is x 20 s earlier: 48, and the name stays (a plain selector).
    `x offset 10 + 10` is (x offset 10s) + 10 = 49 + 10 = 59, and the + drops the name.
    `x offset -(5s*2)` looks 10 s ahead: 51. `x offset (2 ^ 2 * 5)` is 20 s: 48."""
    assert _one(on, "x offset (10 + 10)", T0 + 500) == ({"__name__": "x"}, 48)
    assert _one(on, "x offset 10 + 10", T0 + 500) == ({}, 59)
    assert _one(on, "x offset -(5s*2)", T0 + 500) == ({"__name__": "x"}, 51)
    assert _one(on, "x offset (2 ^ 2 * 5)", T0 + 500) == ({"__name__": "x"}, 48)


def test_step_and_range_are_the_query_shape(on: ReplaySource) -> None:
    """A range query from T0+500 to T0+540 step 20s: step() = 20 s and range() = 40 s.
    count_over_time(x[step()]) counts 2 samples in each (t-20s, t]; x[range()] counts 4;
    x[min_of(step(), 10s)] counts 1. `x offset step()` at T0+500, +520, +540 is 48, 50, 52.
    For an instant query range() is 0, so `x offset range()` is x itself: 50."""
    def row(q: str) -> list[float]:
        data = on.query_range_raw(q, T0 + 500, T0 + 540, 20)
        return [float(v) for _, v in data["result"][0]["values"]]
    assert row("count_over_time(x[step()])") == [2, 2, 2]
    assert row("count_over_time(x[range()])") == [4, 4, 4]
    assert row("count_over_time(x[min_of(step(), 10s)])") == [1, 1, 1]
    assert row("x offset step()") == [48, 50, 52]
    assert _one(on, "x offset range()", T0 + 500)[1] == 50


def test_off_by_default_as_in_prometheus() -> None:
    """Without the feature (Prometheus's default) `x[20s+10s]` is a parse error; 2.x never has it."""
    with pytest.raises(BadInput, match="bad PromQL"):
        ReplaySource.from_frame(_frame(), promql="3").query_raw("count_over_time(x[20s+10s])", T0 + 500)
    with pytest.raises(BadInput, match="bad PromQL"):
        ReplaySource.from_frame(_frame(), promql="2", features=ON).query_raw("count_over_time(x[20s+10s])", T0 + 500)


def test_workspace_setting_turns_it_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[replay] features = ["promql-duration-expr"]` in incidentbook.toml applies to bundles."""
    (tmp_path / "incidentbook.toml").write_text('[replay]\nfeatures = ["promql-duration-expr"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    src = ReplaySource(write_bundle(tmp_path / "b", MANIFEST, _frame()))
    assert _one(src, "count_over_time(x[20s+10s])", T0 + 500)[1] == 3


def test_unknown_feature_and_bad_expressions_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadInput, match="not a feature replay follows"):
        ReplaySource.from_frame(_frame(), features=["promql-nope"])
    with pytest.raises(BadInput, match="list of names"):
        ReplaySource.from_frame(_frame(), features="promql-duration-expr")
    src = ReplaySource.from_frame(_frame(), features=ON)
    for q in ["x[1m/0]", "x[1m % 0]", "x[foo()]", "x[1m+]", "x[(1m]", "x offset (1m/0)", "x[9^999]"]:
        with pytest.raises(BadInput):
            src.query_raw(f"count_over_time({q})" if "[" in q else q, T0 + 500)
    (tmp_path / "incidentbook.toml").write_text('[replay]\nfeatures = "x"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        ReplaySource(write_bundle(tmp_path / "b", MANIFEST, _frame()))


@pytest.mark.parametrize("text", [
    'x{a="[1m+1m]"}',                   # inside a label value
    'x{a="offset (1m)"}',
    "sum by (offset) (x)",              # a label called offset
    "x offset 5m",                      # already plain
    "x[5m:1m]",
    "x[5m:]",
])
def test_rewrite_leaves_strings_labels_and_plain_durations(text: str) -> None:
    assert rewrite(text, 0, 0) == text


def test_rewrite_values() -> None:
    """24m+((1.5*2m)+2m) = 24 + 3 + 2 = 29 min = 1,740,000 ms; 30m1s-30m1s % 1m = 1801 − 1 = 1800 s."""
    assert rewrite("x[24m+((1.5*2m)+2m)]", 0, 0) == "x[1740000ms]"
    assert rewrite("x[30m1s-30m1s % 1m]", 0, 0) == "x[1800000ms]"
    assert json.dumps(rewrite("x offset -min_of(step(), 1s)", 5000, 0)) == json.dumps("x offset -1000ms")


def test_long_operator_chains_are_one_line_errors_or_answers(on: ReplaySource) -> None:
    """A 20,000-term `1^1^…` range (1 s: (T0+499, T0+500] holds the one sample at T0+500) and
    15,000 signs (an even count: +10 s) before an offset are worked out without exhausting the
    stack; 2^3^2 is right-associative: 512 s."""
    assert _one(on, "count_over_time(x[" + "^".join(["1"] * 20000) + "s])", T0 + 500)[1] == 1
    assert _one(on, "x offset (" + "-" * 15000 + "10s)", T0 + 500)[1] == 49
    assert rewrite("x[2^3^2]", 0, 0) == "x[512000ms]"
