"""LogQL replay over recorded log entries (a bundle's logs.jsonl rows)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.base import LogsSource
from incidentbook.telemetry.logql import LogQLReplay, parse_duration, parse_logql

T0 = pd.Timestamp("2026-11-23T10:00:00Z")


def _at(sec: float) -> str:
    return (T0 + pd.Timedelta(seconds=sec)).isoformat()


def make_logs():
    logs = []
    # checkout: one JSON line per second for 120 s; every 4th is a 503 error.
    for i in range(120):
        err = i % 4 == 0
        logs.append({"timestamp": _at(i), "labels": {"service": "checkout", "pod": f"checkout-{i % 2}"},
                     "line": json.dumps({"level": "error" if err else "info", "status": 503 if err else 200,
                                         "http": {"path": "/pay", "ms": 900 if err else 40},
                                         "msg": "upstream timeout" if err else "ok"})})
    # payments: logfmt every 2 s.
    for i in range(0, 120, 2):
        logs.append({"timestamp": _at(i + 0.5), "labels": {"service": "payments"},
                     "line": f'level={"warn" if i >= 60 else "info"} msg="db pool exhausted" wait_ms={i * 10}'})
    # a plain-text line in checkout's stream that JSON cannot parse
    logs.append({"timestamp": _at(30.25), "labels": {"service": "checkout", "pod": "checkout-0"},
                 "line": "panic: runtime error: invalid memory address"})
    return logs


@pytest.fixture(scope="module")
def replay():
    return LogQLReplay(make_logs())


def test_stream_selectors_and_line_filters(replay):
    assert isinstance(replay, LogsSource)
    df = replay.query_logs('{service="checkout"} |= "timeout"', T0, T0 + pd.Timedelta(minutes=5), limit=1000)
    assert len(df) == 30 and set(df["pod"]) == {"checkout-0"}  # i % 4 == 0 are all even
    assert df["timestamp"].is_monotonic_decreasing
    df = replay.query_logs('{service=~"check.*", pod!="checkout-1"} != "timeout" |~ "pan+ic"', T0, T0 + pd.Timedelta(minutes=5))
    assert df["line"].tolist() == ["panic: runtime error: invalid memory address"]
    df = replay.query_logs('{service!~"checkout|x"}', T0, T0 + pd.Timedelta(seconds=10), direction="forward")
    assert df["service"].unique().tolist() == ["payments"] and df["timestamp"].is_monotonic_increasing
    assert len(df) == 5
    assert replay.query_logs('{service=~"check"}', T0, T0 + pd.Timedelta(minutes=5)).empty  # anchored regex
    assert len(replay.query_logs('{service="checkout"}', T0, T0 + pd.Timedelta(minutes=5), limit=7)) == 7


def test_json_parser_and_label_filters(replay):
    q = '{service="checkout"} | json | status >= 500 and http_ms > 500'
    df = replay.query_logs(q, T0, T0 + pd.Timedelta(minutes=5), limit=1000)
    assert len(df) == 30
    assert set(df["level"]) == {"error"} and set(df["http_path"]) == {"/pay"}
    df = replay.query_logs('{service="checkout"} | json | level="error", msg=~"upstream.*"', T0, T0 + pd.Timedelta(minutes=5))
    assert len(df) == 30
    # The non-JSON line carries __error__ and can be dropped or selected.
    df = replay.query_logs('{service="checkout"} | json | __error__!=""', T0, T0 + pd.Timedelta(minutes=5))
    assert df["__error__"].tolist() == ["JSONParserErr"]


def test_logfmt_parser(replay):
    df = replay.query_logs('{service="payments"} | logfmt | level="warn" | wait_ms >= 1000', T0, T0 + pd.Timedelta(minutes=5))
    assert sorted(df["wait_ms"].astype(int)) == list(range(1000, 1200, 20))
    assert set(df["msg"]) == {"db pool exhausted"}


def test_count_over_time_and_rate(replay):
    q = 'sum by (level) (count_over_time({service="checkout"} | json | __error__="" [1m]))'
    df = replay.query_range(q, T0 + pd.Timedelta(seconds=60), T0 + pd.Timedelta(seconds=120), step=60)
    got = {(r.level, r.timestamp): r.value for r in df.itertuples()}
    # window (0s, 60s] (end inclusive): entries 1..60 -> errors at 4,8,..,60 = 15, info 45
    assert got[("error", T0 + pd.Timedelta(seconds=60))] == 15
    assert got[("info", T0 + pd.Timedelta(seconds=60))] == 45
    # window (60s, 120s]: entries 61..119 -> errors 64..116 = 14, info 45
    assert got[("error", T0 + pd.Timedelta(seconds=120))] == 14
    assert got[("info", T0 + pd.Timedelta(seconds=120))] == 45
    rate = replay.query_range('rate({service="payments"}[1m])', T0 + pd.Timedelta(seconds=60), T0 + pd.Timedelta(seconds=60), step=60)
    assert rate["value"].tolist() == [pytest.approx(30 / 60)]
    by_pod = replay.query('sum without (pod) (count_over_time({service="checkout"} |= "timeout" [2m]))', T0 + pd.Timedelta(seconds=120))
    # (0s, 120s]: the line at exactly 0 s falls outside the open start -> 4, 8, .., 116 = 29
    assert list(by_pod.columns) == ["timestamp", "service", "value"] and by_pod["value"].tolist() == [29]
    total = replay.query('sum(count_over_time({service=~".+"}[10m]))', T0 + pd.Timedelta(seconds=200))
    assert total["value"].tolist() == [len(make_logs())]
    # No entries in a window -> no sample, not a zero.
    assert replay.query('count_over_time({service="checkout"}[1m])', T0 + pd.Timedelta(hours=2)).empty


def test_metric_query_over_unparsed_lines_fails_like_loki(replay):
    with pytest.raises(BadInput, match=r'JSONParserErr.*__error__=""'):
        replay.query('count_over_time({service="checkout"} | json [5m])', T0 + pd.Timedelta(minutes=2))


def test_query_logs_routes_metric_queries(replay):
    df = replay.query_logs('count_over_time({service="payments"}[1m])', T0, T0 + pd.Timedelta(minutes=2))
    assert "value" in df.columns and "line" not in df.columns


@pytest.mark.parametrize("q", [
    '{app="a"} | line_format "{{.msg}}"',
    '{app="a"} | pattern "<ip> <_>"',
    '{app="a"} | regexp "(?P<x>.*)"',
    'topk(3, count_over_time({app="a"}[1m]))',
    'sum_over_time({app="a"} | logfmt | unwrap ms [1m])',
    'count_over_time({app="a"}[1m] offset 1h)',
    'count_over_time({app="a"}[1m]) / 2',
    '{app="a"} | json | level="error" or level="warn"',
    '{app="a"} | json | latency > 250ms',
    '{app="a"} | json foo="bar"',
])
def test_unsupported_constructs_are_named(q):
    with pytest.raises(UnsupportedQuery, match="not supported in replay: "):
        parse_logql(q)


@pytest.mark.parametrize("q, msg", [
    ("", "empty LogQL"),
    ('{app="a"', "expected"),
    ("{}", "at least one matcher"),
    ('{app=a}', "quoted strings"),
    ('{app=~"("}', "bad regular expression"),
    ('count_over_time({app="a"})', "expected '\\['"),
    ('sum({app="a"})', "needs a metric query"),
])
def test_parse_errors_are_bad_input(q, msg):
    with pytest.raises(BadInput, match=msg) as e:
        parse_logql(q)
    assert not isinstance(e.value, UnsupportedQuery)


def test_durations():
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(BadInput):
        parse_duration("5x")
