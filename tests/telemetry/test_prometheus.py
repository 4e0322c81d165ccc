"""Prometheus connector against a real Prometheus (Debian `prometheus`, backfilled with promtool),
plus loopback HTTP servers for the failure modes a real server cannot be made to show on demand
(401, hanging responses)."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pandas as pd
import pytest

from incidentbook.config import SourceConfig
from incidentbook.errors import BadInput, ConfigError, SourceError
from incidentbook.telemetry.base import MetricsSource, to_wide
from incidentbook.telemetry.bundle import labels_key
from incidentbook.telemetry.prometheus import (
    MAX_POINTS,
    PrometheusSource,
    auto_step,
    result_to_frame,
)
from tests.support.promserver import FIXED_NOW, start_prometheus
from tests.telemetry.loopback import LoopbackServer, Reply

START = FIXED_NOW - 3 * 3600
END = FIXED_NOW


def _metrics() -> pd.DataFrame:
    ts = np.arange(START, END + 1, 15)
    rows = []
    for svc, rate in (("checkout", 5.0), ("search", 2.0)):
        for code in ("200", "500"):
            v = np.cumsum(np.full(len(ts), rate * 15 * (0.1 if code == "500" else 1.0)))
            for t, x in zip(ts, v):
                rows.append((t, "http_requests_total", labels_key({"service": svc, "code": code}), x))
    g = np.sin(np.arange(len(ts)) / 20.0)
    rows += [(t, "queue_depth", labels_key({"service": "checkout"}), x) for t, x in zip(ts, g)]
    df = pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    return df


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    server = start_prometheus(tmp_path_factory.mktemp("prom"), _metrics())
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_range_query_matches_prometheus_json(prom):
    src = PrometheusSource(prom.url)
    assert isinstance(src, MetricsSource)
    q = 'sum by (service) (rate(http_requests_total[5m]))'
    df = src.query_range(q, START + 600, END, step=60)
    raw = prom.query_range(q, START + 600, END, 60)
    assert list(df.columns) == ["timestamp", "service", "value"]
    assert str(df["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert df["value"].dtype == np.float64
    assert len(df) == sum(len(s["values"]) for s in raw["result"])
    checkout = df[df["service"] == "checkout"]
    # 200s at 5/s plus 500s at 0.5/s
    assert checkout["value"].iloc[-1] == pytest.approx(5.5, rel=1e-9)
    first = raw["result"][0]
    got = df[df["service"] == first["metric"]["service"]]
    assert [float(v) for _, v in first["values"]] == got["value"].tolist()
    assert [t * 1000 for t, _ in first["values"]] == got["timestamp"].map(lambda x: x.value // 10**6).tolist()
    wide = to_wide(df)
    assert wide.shape[1] == 2


@pytest.mark.slow
def test_instant_and_scalar_queries(prom):
    src = PrometheusSource(prom.url)
    df = src.query('http_requests_total{service="search"}', END)
    assert set(df["code"]) == {"200", "500"}
    assert set(df["__name__"]) == {"http_requests_total"}
    assert list(df.columns)[:2] == ["timestamp", "__name__"]
    assert (df["timestamp"] == pd.Timestamp(END, unit="s", tz="UTC")).all()
    s = src.query("scalar(sum(queue_depth))", END)
    assert list(s.columns) == ["timestamp", "value"] and len(s) == 1
    assert src.query('nonexistent_metric{a="b"}', END).empty


@pytest.mark.slow
def test_step_is_chosen_to_stay_under_the_point_limit(prom):
    src = PrometheusSource(prom.url)
    start, end = END - 3 * 86400, END  # 15 s would be 17,281 points: Prometheus refuses that
    df = src.query_range("vector(1)", start, end)
    assert 0 < len(df) <= MAX_POINTS
    steps = df["timestamp"].diff().dropna().dt.total_seconds().unique()
    assert list(steps) == [30.0]
    assert df["timestamp"].iloc[0].value // 10**9 % 30 == 0  # aligned
    with pytest.raises(BadInput, match="11000 points"):
        src.query_range("vector(1)", start, end, step=15)


def test_auto_step_bounds():
    for span in (60, 3600, 6 * 3600, 86400, 30 * 86400, 400 * 86400):
        step = auto_step(0, span)
        assert step >= 15
        assert span / step + 1 <= MAX_POINTS
    assert auto_step(0, 3600) == 15


@pytest.mark.slow
def test_malformed_promql_shows_prometheus_error(prom):
    src = PrometheusSource(prom.url)
    with pytest.raises(BadInput) as e:
        src.query_range("sum(rate(http_requests_total[5m]", START, END, step=60)
    assert "parse error" in str(e.value)
    assert "sum(rate(http_requests_total[5m]" in str(e.value)
    assert e.value.exit_code == 2


def test_unreachable_server_names_url_and_hint():
    url = f"http://127.0.0.1:{_free_port()}"
    src = PrometheusSource(url, retries=0)
    with pytest.raises(SourceError) as e:
        src.query("up", 0)
    msg = str(e.value)
    assert url in msg and "is Prometheus running?" in msg and "[sources.prometheus] url" in msg
    st = src.status()
    assert not st.ok and url in st.reason


def test_auth_header_from_env_and_401_names_the_variable(monkeypatch):
    def handler(req):
        if req.headers.get("authorization") != "Bearer good":
            return Reply(401, "Unauthorized")
        return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"job": "x"}, "value": [100.0, "1"]}]}})

    with LoopbackServer(handler) as srv:
        cfg = SourceConfig(url=srv.url, headers_env={"Authorization": "PROM_AUTH_TEST"})
        monkeypatch.delenv("PROM_AUTH_TEST", raising=False)
        with pytest.raises(ConfigError, match="PROM_AUTH_TEST"):
            PrometheusSource.from_config(cfg)
        monkeypatch.setenv("PROM_AUTH_TEST", "Bearer good")
        df = PrometheusSource.from_config(cfg).query("up", 100)
        assert df["job"].tolist() == ["x"]
        monkeypatch.setenv("PROM_AUTH_TEST", "Bearer stale")
        with pytest.raises(SourceError) as e:
            PrometheusSource.from_config(cfg).query("up", 100)
        assert "401" in str(e.value) and "$PROM_AUTH_TEST" in str(e.value)


def test_timeout_is_reported_with_the_setting_to_raise():
    with LoopbackServer(lambda req: Reply(200, {"status": "success", "data": {}}, delay_s=2.0)) as srv:
        src = PrometheusSource(srv.url, timeout_s=0.3, retries=0)
        with pytest.raises(SourceError, match=r"did not answer within 0.3s.*timeout_s"):
            src.query("up", 0)


def test_server_error_retried_then_reported():
    calls = []

    def handler(req):
        calls.append(req)
        return Reply(503, {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"})

    with LoopbackServer(handler) as srv:
        with pytest.raises(SourceError, match="TSDB not ready"):
            PrometheusSource(srv.url, retries=2).query("up", 0)
    assert len(calls) == 3


def test_result_to_frame_shapes():
    data = {"resultType": "matrix", "result": [
        {"metric": {"__name__": "m", "a": "1"}, "values": [[10, "1.5"], [25, "NaN"], [40, "+Inf"]]},
        {"metric": {"__name__": "m", "b": "2"}, "values": [[10.5, "-Inf"]]},
    ]}
    df = result_to_frame(data)
    assert list(df.columns) == ["timestamp", "__name__", "a", "b", "value"]
    assert df["a"].tolist() == ["1", "1", "1", ""]
    assert df["b"].tolist() == ["", "", "", "2"]
    assert df["value"].iloc[0] == 1.5 and math.isnan(df["value"].iloc[1])
    assert df["value"].iloc[2] == math.inf and df["value"].iloc[3] == -math.inf
    assert df["timestamp"].iloc[3] == pd.Timestamp(10_500, unit="ms", tz="UTC")
    empty = result_to_frame({"resultType": "vector", "result": []})
    assert empty.empty and list(empty.columns) == ["timestamp", "value"]
    json.dumps(df.astype(str).to_dict())  # plain strings, serialisable
