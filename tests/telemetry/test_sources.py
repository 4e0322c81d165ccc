"""The Telemetry facade: building sources from config or a bundle, routing, results as values,
and status checks that never raise."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest

from incidentbook.config import load_config
from incidentbook.errors import SourceError
from incidentbook.telemetry.bundle import labels_key, write_bundle
from incidentbook.telemetry.changes import ChangesFeed
from incidentbook.telemetry.prometheus import PrometheusSource
from incidentbook.telemetry.sources import (
    SOURCES,
    RecordedEvents,
    Telemetry,
    register_source,
    source_class,
)
from tests.telemetry.loopback import LoopbackServer, Reply

T0 = pd.Timestamp("2026-11-23T10:00:00Z")
END = T0 + pd.Timedelta(minutes=30)


@pytest.fixture()
def bundle(tmp_path):
    ts = pd.date_range(T0, END, freq="15s")
    rows = []
    for svc, per_s in (("checkout", 4.0), ("search", 1.0)):
        for i, t in enumerate(ts):
            rows.append((t, "http_requests_total", labels_key({"service": svc}), per_s * 15 * i))
    metrics = pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])
    logs = [{"timestamp": (T0 + pd.Timedelta(seconds=i)).isoformat(), "labels": {"service": "checkout"},
             "line": f"level={'error' if i % 10 == 0 else 'info'} msg=req"} for i in range(600)]
    events = [{"timestamp": T0 + pd.Timedelta(minutes=3), "namespace": "shop", "kind": "Pod", "name": "checkout-1",
               "type": "Warning", "reason": "OOMKilling", "message": "out of memory", "count": 2}]
    changes = [{"timestamp": T0 + pd.Timedelta(minutes=2), "service": "checkout", "kind": "deploy",
                "description": "checkout v2", "author": "ci", "details": {}}]
    context = [{"start": T0 - pd.Timedelta(hours=1), "end": END + pd.Timedelta(hours=1), "kind": "launch",
                "title": "Campaign", "services": ["checkout"], "details": {}}]
    return write_bundle(tmp_path / "bundle", {"window": {"start": T0, "end": END}, "services": ["checkout", "search"]},
                        metrics, logs, events, changes, context)


def test_from_bundle_answers_every_kind(bundle):
    tel = Telemetry.from_bundle(bundle)
    df = tel.query_range('sum by (service) (rate(http_requests_total[5m]))', T0 + pd.Timedelta(minutes=10), END, 60)
    last = df.groupby("service")["value"].last()
    assert last["checkout"] == pytest.approx(4.0) and last["search"] == pytest.approx(1.0)
    assert len(tel.query_logs('{service="checkout"} | logfmt | level="error"', T0, END, limit=1000)) == 60
    assert tel.events(T0, END)["reason"].tolist() == ["OOMKilling"]
    assert tel.changes(T0, END, service="checkout")["description"].tolist() == ["checkout v2"]
    assert tel.context(T0, END)["title"].tolist() == ["Campaign"]
    assert all(s.ok for s in tel.status() if s.name in tel.sources)


def test_safe_calls_return_values_not_exceptions(bundle):
    tel = Telemetry.from_bundle(bundle)
    ok = tel.safe_query('http_requests_total{service="search"}', END)
    assert ok.status == "ok" and ok.ok and len(ok.data) == 1 and ok.query == 'http_requests_total{service="search"}'
    none = tel.safe_query_range('http_requests_total{service="nope"}', T0, END, 60)
    assert none.status == "no_data" and none.data is not None and none.data.empty
    bad = tel.safe_query_range("sum(rate(", T0, END, 60)
    assert bad.status == "error" and bad.error and bad.data is None
    unsupported = tel.safe_query_logs('{service="checkout"} | line_format "{{.msg}}"', T0, END)
    assert unsupported.status == "error" and "not supported in replay" in unsupported.error
    ev = tel.run("events", T0, T0 + pd.Timedelta(minutes=1))
    assert ev.status == "no_data"
    assert tel.safe_changes(T0, END).ok and tel.safe_context(T0, END).ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_from_config_keeps_broken_sources_as_status(tmp_path, monkeypatch):
    monkeypatch.delenv("LOKI_AUTH_T", raising=False)
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    dead = f"http://127.0.0.1:{_free_port()}"
    (tmp_path / "incidentbook.toml").write_text(f"""
[sources.prometheus]
url = "{dead}"
retries = 0
[sources.loki]
url = "http://127.0.0.1:1"
headers_env = {{ Authorization = "LOKI_AUTH_T" }}
""")
    (tmp_path / "changes.jsonl").write_text(json.dumps(
        {"timestamp": "2026-11-23T10:05:00Z", "service": "checkout", "kind": "flag", "description": "new-cart on"}) + "\n")
    tel = Telemetry.from_config(load_config(start=tmp_path))
    assert isinstance(tel.sources["prometheus"], PrometheusSource)
    assert isinstance(tel.sources["changes"], ChangesFeed)  # the workspace feed is picked up
    statuses = {s.name: s for s in tel.status()}
    assert not statuses["loki"].ok and "LOKI_AUTH_T" in statuses["loki"].reason  # env var check, no request
    assert not statuses["prometheus"].ok and dead in statuses["prometheus"].reason  # reachability
    assert not statuses["events"].ok and "[sources.kubernetes]" in statuses["events"].reason
    assert statuses["changes"].ok
    with pytest.raises(SourceError, match="LOKI_AUTH_T"):
        tel.query_logs('{a="b"}', T0, END)
    res = tel.safe_query("up")
    assert res.status == "error" and "is Prometheus running?" in res.error
    assert tel.changes(T0, END)["description"].tolist() == ["new-cart on"]
    with pytest.raises(SourceError, match=r"no events source configured; add \[sources.kubernetes\]"):
        tel.events(T0, END)


def test_status_reachable_prometheus_and_named_source(tmp_path):
    def handler(req):
        return Reply(200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}})

    with LoopbackServer(handler) as srv:
        tel = Telemetry({"prom-eu": PrometheusSource(srv.url, name="prom-eu")})
        st = tel.status()
        assert [s.ok for s in st if s.name == "prom-eu"] == [True]
        assert tel.query("1", source="prom-eu")["value"].tolist() == [1.0]
        assert tel.safe_query("1", source="nope").status == "error"


class StaticMetrics:
    """A third-party connector: anything with query_range/query is a metrics source."""

    def __init__(self, url: str, name: str = "static") -> None:
        self.name, self.url = name, url

    @classmethod
    def from_config(cls, cfg, name="static"):
        return cls(cfg.url, name)

    def query_range(self, promql, start, end, step=None):
        return pd.DataFrame({"timestamp": pd.to_datetime([0], unit="s", utc=True), "value": np.array([42.0])})

    def query(self, promql, time=None):
        return self.query_range(promql, time, time)


def test_registered_connector_is_built_from_config(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    register_source("static-test", StaticMetrics)
    try:
        (tmp_path / "incidentbook.toml").write_text('[sources.mine]\nkind = "static-test"\nurl = "x"\n')
        tel = Telemetry.from_config(load_config(start=tmp_path))
        assert tel.query("anything")["value"].tolist() == [42.0]
        assert source_class("prometheus") is PrometheusSource  # built-ins resolve lazily
        (tmp_path / "incidentbook.toml").write_text('[sources.mine]\nkind = "no-such"\n')
        statuses = {s.name: s for s in Telemetry.from_config(load_config(start=tmp_path)).status()}
        assert "No telemetry source named 'no-such'" in statuses["mine"].reason
    finally:
        SOURCES._items.pop("static-test", None)


def test_recorded_events_filter_namespace():
    ev = RecordedEvents([{"timestamp": "2026-11-23T10:00:00Z", "namespace": "a", "kind": "Pod", "name": "p",
                          "type": "Warning", "reason": "BackOff", "message": "m", "count": None}])
    assert ev.events(T0, END, namespace="a")["count"].tolist() == [1]
    assert ev.events(T0, END, namespace="b").empty
