"""ReplaySource over bundle directories, and the OpenMetrics text that feeds promtool."""

from __future__ import annotations

import json
import math
import subprocess

import pandas as pd
import pytest

from incidentbook.errors import BadInput, BundleError
from incidentbook.telemetry.base import MetricsSource
from incidentbook.telemetry.bundle import write_bundle
from incidentbook.telemetry.openmetrics import to_openmetrics, write_openmetrics
from incidentbook.telemetry.replay import ReplaySource
from tests.support.promserver import FIXED_NOW, PROMTOOL, binaries_available, start_prometheus

T0 = FIXED_NOW - 600


def metrics(rows: list[tuple[float, str, dict[str, str], float]]) -> pd.DataFrame:
    return pd.DataFrame([(pd.Timestamp(t, unit="s", tz="UTC"), m, json.dumps(lb, sort_keys=True), v)
                         for t, m, lb, v in rows], columns=["timestamp", "metric", "labels", "value"])


@pytest.fixture
def bundle(tmp_path):  # type: ignore[no-untyped-def]
    rows = [(T0 + 15 * i, "up", {"job": "api"}, 1.0 if i < 30 else 0.0) for i in range(41)]
    return write_bundle(tmp_path / "b", {"window": {"start": T0, "end": T0 + 600}}, metrics(rows))


def test_replay_source_reads_a_bundle_and_defaults_to_the_window_end(bundle) -> None:  # type: ignore[no-untyped-def]
    src = ReplaySource(bundle)
    assert isinstance(src, MetricsSource)
    df = src.query("up == 0")
    assert df["timestamp"].tolist() == [pd.Timestamp(T0 + 600, unit="s", tz="UTC")]
    assert df[["__name__", "job", "value"]].values.tolist() == [["up", "api", 0.0]]
    rng = src.query_range("up", T0, T0 + 600, step=60)
    assert rng["value"].tolist() == [1.0] * 8 + [0.0] * 3


def test_default_step_stays_under_the_point_limit(bundle) -> None:  # type: ignore[no-untyped-def]
    src = ReplaySource(bundle)
    assert len(src.query_range("up", T0, T0 + 600)) == 41  # 15 s default
    assert ReplaySource.auto_step_ms(0, 30 * 86400 * 1000) * 10_999 >= 30 * 86400 * 1000


def test_times_accept_iso_strings_and_datetimes(bundle) -> None:  # type: ignore[no-untyped-def]
    src = ReplaySource(bundle)
    iso = pd.Timestamp(T0 + 600, unit="s", tz="UTC").isoformat()
    assert src.query_raw("up", iso) == src.query_raw("up", T0 + 600)
    with pytest.raises(BadInput, match="cannot read time"):
        src.query_raw("up", "yesterday-ish")


def test_missing_bundle_is_a_bundle_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleError):
        ReplaySource(tmp_path / "nope")


def test_openmetrics_text_escapes_orders_and_ends_with_eof() -> None:
    df = metrics([
        (T0 + 30, "g", {"path": 'a"b\\c\nd'}, 2.0),
        (T0, "g", {"path": 'a"b\\c\nd'}, float("nan")),
        (T0 + 0.5, "g", {"path": 'a"b\\c\nd'}, math.inf),
        (T0 + 30, "g", {"path": 'a"b\\c\nd'}, 3.0),  # duplicate timestamp: last row wins
    ])
    lines = to_openmetrics(df).splitlines()
    assert lines == [
        f'g{{path="a\\"b\\\\c\\nd"}} NaN {T0}',
        f'g{{path="a\\"b\\\\c\\nd"}} +Inf {T0}.5',
        f'g{{path="a\\"b\\\\c\\nd"}} 3.0 {T0 + 30}',
        "# EOF",
    ]


def test_openmetrics_refuses_names_prometheus_cannot_store() -> None:
    with pytest.raises(BadInput, match="not a valid Prometheus name"):
        to_openmetrics(metrics([(T0, "http-requests", {}, 1.0)]))
    with pytest.raises(BadInput, match="label name"):
        to_openmetrics(metrics([(T0, "ok", {"bad-label": "x"}, 1.0)]))


@pytest.mark.slow
def test_promtool_backfills_the_text_and_prometheus_serves_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    reason = binaries_available()
    if reason:
        pytest.skip(reason)
    df = metrics([(T0 + 15 * i, "jobs_total", {"q": 'x"y'}, float(i)) for i in range(20)]
                 + [(T0 + 15 * i, "lat_bucket", {"le": "+Inf"}, float(i)) for i in range(20)]
                 + [(T0 + 15 * i, "g", {}, float("nan") if i == 3 else 0.25) for i in range(20)])
    path = write_openmetrics(df, tmp_path / "in.om")
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(path), str(tmp_path / "d")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with start_prometheus(tmp_path, df) as prom:
        got = prom.query("jobs_total", T0 + 15 * 19)["result"]
        assert got == [{"metric": {"__name__": "jobs_total", "q": 'x"y'}, "value": [T0 + 285, "19"]}]
        nan = prom.query("g", T0 + 45)["result"][0]["value"][1]
        assert nan == "NaN"
        assert ReplaySource.from_frame(df).query_raw("g", T0 + 45)["result"][0]["value"][1] == "NaN"
