"""Hostile input to PromQL replay: label values and queries come from recorded telemetry and
from whoever types a query, so none of them may hang, crash or escape the engine.

The buildinfo case uses the real PrometheusSource client against a loopback HTTP server that
speaks Prometheus's /api/v1/status/buildinfo (answering a hostile version string).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from incidentbook.errors import BadInput
from incidentbook.telemetry.bundle import write_bundle
from incidentbook.telemetry.export import prometheus_build
from incidentbook.telemetry.prometheus import PrometheusSource
from incidentbook.telemetry.replay import ReplaySource
from incidentbook.telemetry.sources import Telemetry
from tests.telemetry.loopback import LoopbackServer, Reply, Request

T0 = 1_790_000_400
HOSTILE_VALUES = ["a" * 20_000 + "!", "x\x00y", "é\u202etxt", "\U0001F525" * 50, "{{7*7}}", "$1${2}", "a\nb"]


@pytest.fixture(scope="module")
def src() -> ReplaySource:
    rows = [(pd.Timestamp(T0, unit="s", tz="UTC"), "m", json.dumps({"l": v}), float(i))
            for i, v in enumerate(HOSTILE_VALUES)]
    return ReplaySource.from_frame(pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"]))


def test_catastrophic_regex_runs_in_linear_time(src: ReplaySource) -> None:
    """(a+)+$ against 20,000 a's and a "!" backtracks exponentially in Python's re; RE2 answers."""
    got = src.query_raw('count(m{l=~"(a+)+"})', T0)["result"]
    assert got == []  # the trailing "!" keeps the anchored pattern from matching
    got = src.query_raw('count(m{l=~"(a+)+!"})', T0)["result"]
    assert got[0]["value"][1] == "1"


@pytest.mark.parametrize("q", [
    'm{l=~"\ud800"}',                  # a lone surrogate
    "m\x00",                            # NUL in the query
    "(" * 500 + "m" + ")" * 500,        # nesting deeper than the evaluator's stack
    "+".join(["m"] * 400),              # a long chain of binary operators
    "m" + " " * 70_000,                 # longer than any real query
    "max_over_time(m[100d:1ms])",       # a subquery of billions of steps
    'label_replace(m, "l\x00", "$1", "l", "(.*)")',  # an invalid label name
])
def test_hostile_queries_are_one_line_errors(src: ReplaySource, q: str) -> None:
    with pytest.raises(BadInput) as e:
        src.query_raw(q, T0)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_label_values_are_data_not_templates(src: ReplaySource) -> None:
    """A value holding `$1${2}` or `{{7*7}}` is copied as it is, never expanded."""
    got = src.query_raw('label_replace(m{l=~"[{$].*"}, "copy", "$1", "l", "(.*)")', T0)["result"]
    assert sorted(r["metric"]["copy"] for r in got) == ["$1${2}", "{{7*7}}"]


def test_nul_and_newline_values_match_exactly(src: ReplaySource) -> None:
    assert src.query_raw('m{l="x\\x00y"}', T0)["result"][0]["value"][1] == "1"
    assert src.query_raw('m{l="a\\nb"}', T0)["result"][0]["value"][1] == "6"


@pytest.mark.parametrize("recorded", [{"version": "9" * 400}, {"version": ["2"]}, "2.42.0", {"version": "2.x; rm"}])
def test_odd_recorded_versions_fall_back_to_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        recorded: object) -> None:
    monkeypatch.chdir(tmp_path)  # no incidentbook.toml here: the default applies
    df = pd.DataFrame([(pd.Timestamp(T0, unit="s", tz="UTC"), "m", "{}", 1.0)],
                      columns=["timestamp", "metric", "labels", "value"])
    win = {"start": pd.Timestamp(T0, unit="s", tz="UTC"), "end": pd.Timestamp(T0 + 60, unit="s", tz="UTC")}
    out = write_bundle(tmp_path / "b", {"window": win, "prometheus": recorded}, df)
    assert ReplaySource(out).promql in ("2", "3")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("version"), str):
        assert ReplaySource(out).promql == "3"


@pytest.mark.parametrize("version", ["<script>alert(1)</script>", "2.42.0\n[replay]", "x" * 10_000, 42])
def test_export_records_only_a_version_shaped_buildinfo(version: object) -> None:
    def handler(req: Request) -> Reply:
        if req.path == "/api/v1/status/buildinfo":
            return Reply(body={"status": "success", "data": {"version": version}})
        return Reply(status=404, body={"status": "error", "error": "not found"})

    with LoopbackServer(handler) as server:
        assert prometheus_build(Telemetry([PrometheusSource(server.url)])) is None

    def good(req: Request) -> Reply:
        return Reply(body={"status": "success", "data": {"version": "3.1.0", "revision": "abc"}})

    with LoopbackServer(good) as server:
        assert prometheus_build(Telemetry([PrometheusSource(server.url)])) == {"version": "3.1.0"}
