"""Bundle export against a real Prometheus (Debian `prometheus`, backfilled with promtool) and a
loopback HTTP server speaking Loki's query API (no Loki binary can be installed here); the
exported bundle is then replayed and must answer like the live systems did."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from incidentbook.errors import BadInput, BundleError
from incidentbook.telemetry.bundle import labels_key, open_bundle
from incidentbook.telemetry.changes import ChangesFeed, ContextCalendar
from incidentbook.telemetry.export import export_bundle
from incidentbook.telemetry.loki import LokiSource
from incidentbook.telemetry.prometheus import PrometheusSource
from incidentbook.telemetry.replay import ReplaySource
from incidentbook.telemetry.sources import Telemetry
from tests.support.promserver import FIXED_NOW, start_prometheus
from tests.telemetry.loopback import LoopbackServer, Reply

START = FIXED_NOW - 3600
END = FIXED_NOW
WIN_START, WIN_END = pd.Timestamp(END - 1800, unit="s", tz="UTC"), pd.Timestamp(END, unit="s", tz="UTC")


def _metrics() -> pd.DataFrame:
    ts = np.arange(START, END + 1, 15)
    rows = []
    for key, per_s in (({"service": "checkout", "code": "500"}, 2.0), ({"service": "checkout", "code": "200"}, 9.0),
                       ({"job": "search"}, 3.0), ({"service": "billing"}, 7.0)):
        rows += [(t, "http_requests_total", labels_key(key), per_s * (t - START)) for t in ts]
    rows += [(t, "up", labels_key({"job": "search", "instance": "s:9"}), 1.0) for t in ts]
    df = pd.DataFrame(rows, columns=["timestamp", "metric", "labels", "value"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    return df


LOG_LINES = [
    (END - 600, {"service": "checkout", "pod": "c-1"}, 'level=error msg="charge failed" Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def'),
    (END - 500, {"service": "checkout", "pod": "c-1"}, "connecting to postgres://app:hunter2@db:5432/shop"),
    (END - 400, {"service": "search", "pod": "s-1"}, "aws key AKIAIOSFODNN7EXAMPLE password=swordfish ok"),
    (END - 300, {"service": "billing", "pod": "b-1"}, "not an involved service"),
    (END - 7200, {"service": "checkout", "pod": "c-1"}, "outside the window"),
]


def fake_loki(req):
    if req.path != "/loki/api/v1/query_range":
        return Reply(404, "404 page not found")
    q = req.params["query"]
    assert q == '{service=~"checkout|search"}', q
    lo, hi, limit = int(req.params["start"]), int(req.params["end"]), int(req.params["limit"])
    hits = sorted([e for e in LOG_LINES if lo <= e[0] * 10**9 < hi and e[1]["service"] in ("checkout", "search")],
                  key=lambda e: -e[0])[:limit]
    return Reply(200, {"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": labels, "values": [[str(ts * 10**9), line]]} for ts, labels, line in hits]}})


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    server = start_prometheus(tmp_path_factory.mktemp("prom"), _metrics())
    yield server
    server.stop()


@pytest.fixture()
def workspace(tmp_path):
    (tmp_path / "changes.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"timestamp": str(WIN_START + pd.Timedelta(minutes=5)), "service": "checkout", "kind": "deploy", "description": "checkout v3"},
        {"timestamp": str(WIN_START + pd.Timedelta(minutes=6)), "service": "billing", "kind": "deploy", "description": "billing v9"},
    ]) + "\n")
    (tmp_path / "context.jsonl").write_text(json.dumps(
        {"start": str(WIN_START - pd.Timedelta(hours=2)), "end": str(WIN_END), "kind": "launch", "title": "Sale"}) + "\n")
    return tmp_path


@pytest.mark.slow
def test_export_then_replay_matches_live(prom, workspace, tmp_path):
    with LoopbackServer(fake_loki) as loki:
        live = Telemetry([PrometheusSource(prom.url), LokiSource(loki.url),
                          ChangesFeed(workspace / "changes.jsonl"), ContextCalendar(workspace / "context.jsonl")])
        out = export_bundle(live, tmp_path / "b", WIN_START, WIN_END, ["checkout", "search"],
                            namespace="shop", topology={"checkout": ["search"]})
    b = open_bundle(out)
    assert b.services == ["checkout", "search"] and b.topology == {"checkout": ["search"]}
    assert b.window == (WIN_START, WIN_END)
    assert b.manifest["gaps"] == {"events": "no events source configured"}
    # The source's Prometheus version is recorded, and replay follows that version's semantics.
    assert b.manifest["prometheus"]["version"].startswith("2.")
    assert ReplaySource(out).promql == "2"
    m = b.metrics
    # only the involved services' series, via the service or job label; billing is left out
    keys = {(r.metric, r.labels) for r in m[["metric", "labels"]].drop_duplicates().itertuples()}
    assert keys == {("http_requests_total", labels_key({"service": "checkout", "code": "500"})),
                    ("http_requests_total", labels_key({"service": "checkout", "code": "200"})),
                    ("http_requests_total", labels_key({"job": "search"})),
                    ("up", labels_key({"job": "search", "instance": "s:9"}))}
    assert m["timestamp"].min() == WIN_START and m["timestamp"].max() == WIN_END
    # secrets masked, window and service filters applied
    lines = [r["line"] for r in b.logs]
    assert len(lines) == 3
    text = "\n".join(lines)
    for secret in ("eyJhbGciOiJIUzI1NiJ9", "hunter2", "AKIAIOSFODNN7EXAMPLE", "swordfish"):
        assert secret not in text
    assert 'msg="charge failed"' in text and "postgres://app:" in text
    assert [c["description"] for c in b.changes] == ["checkout v3"]
    assert [c["title"] for c in b.context] == ["Sale"]
    # The bundle answers PromQL like the live Prometheus did.
    q = 'sum by (service) (rate(http_requests_total{service="checkout"}[5m]))'
    t_eval = WIN_END - pd.Timedelta(minutes=1)
    replayed = Telemetry.from_bundle(out).query(q, t_eval)
    real = PrometheusSource(prom.url).query(q, t_eval)
    assert replayed["value"].tolist() == pytest.approx(real["value"].tolist(), rel=1e-9)
    assert real["value"].tolist() == pytest.approx([11.0])
    logs = Telemetry.from_bundle(out).query_logs('{service="checkout"} |= "charge"', WIN_START, WIN_END)
    assert len(logs) == 1 and "Bearer [TOKEN-" in logs["line"].iloc[0]


@pytest.mark.slow
def test_export_records_gaps_and_respects_budget(prom, tmp_path):
    live = Telemetry([PrometheusSource(prom.url), LokiSource("http://127.0.0.1:9", retries=0)])
    out = export_bundle(live, tmp_path / "b", WIN_START, WIN_END, ["checkout"], redact=str.upper)
    gaps = open_bundle(out).manifest["gaps"]
    assert "is Loki running?" in gaps['logs {service=~"checkout"}']
    assert len(open_bundle(out).metrics) > 0
    with pytest.raises(BundleError, match="over the budget"):
        export_bundle(live, tmp_path / "small", WIN_START, WIN_END, ["checkout"], max_bytes=1000)
    with pytest.raises(BadInput, match="before it starts"):
        export_bundle(live, tmp_path / "x", WIN_END, WIN_START, ["checkout"])
