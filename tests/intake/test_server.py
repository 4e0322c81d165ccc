"""The intake HTTP API in-process (FastAPI TestClient): auth, limits, validation, persistence,
PagerDuty signatures, generic alerts, storm correlation, the incidents page and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.correlate import Topology
from incidentbook.intake.pagerduty import sign
from incidentbook.intake.server import ServerSettings, create_app
from incidentbook.intake.service import IntakeService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PD_SECRET = "pd-shared-secret"


def _am(service: str, alertname: str = "HighErrorRate", fp: str = "", title: str = "") -> str:
    doc = json.loads((FIXTURES / "checkout_firing.json").read_bytes())
    doc["groupKey"] = f'{{}}:{{alertname="{alertname}", service="{service}"}}'
    a = doc["alerts"][0]
    a["labels"].update({"alertname": alertname, "service": service})
    a["fingerprint"] = fp or f"{service}-{alertname}"
    if title:
        a["annotations"]["summary"] = title
        doc["commonAnnotations"] = {"summary": title}
    doc["alerts"] = [a]
    doc["commonLabels"] = {"alertname": alertname, "service": service}
    return json.dumps(doc)


@pytest.fixture
def service(tmp_path: Path) -> Any:
    cfg = Config(home=tmp_path)
    cfg.server.rate_limit_per_s = 1000
    store = Store.from_config(cfg)
    topo = Topology({"frontend": ["checkout"], "checkout": ["payments", "db"], "search": ["db"]})
    svc = IntakeService(cfg, store, topology=topo, run_runbooks=False)
    yield svc
    store.close()


@pytest.fixture
def client(service: IntakeService) -> TestClient:
    app = create_app(service, ServerSettings(token=TOKEN, pagerduty_secret=PD_SECRET,
                                             lab_url="http://lab.example:8888"))
    return TestClient(app)


def drain(service: IntakeService) -> list[Any]:
    out = []
    while (r := service.queue.process_next_alert()) is not None:
        out.append(r)
    return out


def test_without_the_bearer_token_nothing_is_stored(client: TestClient, service: IntakeService) -> None:
    body = _am("checkout")
    assert client.post("/api/v1/alertmanager", content=body).status_code == 401
    r = client.post("/api/v1/alertmanager", content=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "INCIDENTBOOK_TOKEN" in r.json()["detail"]
    assert service.queue.counts() == {}


def test_the_body_is_persisted_before_the_2xx_and_a_repeat_is_one_item(client: TestClient, service: IntakeService) -> None:
    body = _am("checkout")
    r = client.post("/api/v1/alertmanager", content=body, headers=AUTH)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    # no worker ran: the body is in the store's queue, waiting
    assert service.queue.counts() == {"alert": {"queued": 1}}
    again = client.post("/api/v1/alertmanager", content=body, headers=AUTH)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "id": r.json()["id"]}
    [done] = drain(service)
    assert done.created and service.store.get_incident(done.incident_id).service == "checkout"
    assert service.queue.counts() == {"alert": {"done": 1}, "runbook": {"queued": 1}}


def test_oversized_body_is_413(client: TestClient, service: IntakeService) -> None:
    big = b'{"version":"4","pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    r = client.post("/api/v1/alertmanager", content=big, headers=AUTH)
    assert r.status_code == 413 and "5 MB" in r.json()["detail"]
    assert service.queue.counts() == {}


def test_invalid_payload_is_422_naming_the_field(client: TestClient, service: IntakeService) -> None:
    doc = json.loads(_am("checkout"))
    del doc["alerts"][0]["labels"]["alertname"]
    r = client.post("/api/v1/alertmanager", content=json.dumps(doc), headers=AUTH)
    assert r.status_code == 422 and "alerts[0].labels" in r.json()["detail"]
    r = client.post("/api/v1/alerts", content=json.dumps({"service": "db"}), headers=AUTH)
    assert r.status_code == 422 and "`alertname`" in r.json()["detail"]
    r = client.post("/api/v1/alertmanager", content=b"\xff\xfe", headers=AUTH)
    assert r.status_code == 422
    assert service.queue.counts() == {}


def test_rate_limit_is_per_source_with_retry_after(service: IntakeService) -> None:
    service.cfg.server.rate_limit_per_s = 0.5
    service.cfg.server.rate_limit_burst = 3
    app = create_app(service, ServerSettings(token=TOKEN))
    a = TestClient(app, client=("10.0.0.1", 1234))
    b = TestClient(app, client=("10.0.0.2", 1234))
    codes = [a.post("/api/v1/alerts", json={"alertname": f"A{i}"}, headers=AUTH).status_code for i in range(5)]
    assert codes == [202, 202, 202, 429, 429]
    limited = a.post("/api/v1/alerts", json={"alertname": "A9"}, headers=AUTH)
    assert int(limited.headers["Retry-After"]) >= 1
    assert b.post("/api/v1/alerts", json={"alertname": "B"}, headers=AUTH).status_code == 202


def _pd_event(event_type: str, incident: str = "PXYZ123") -> bytes:
    return json.dumps({"event": {
        "id": "01ABC", "event_type": event_type, "resource_type": "incident",
        "occurred_at": "2026-03-14T10:05:00Z",
        "data": {"id": incident, "type": "incident", "title": "Payments API is down", "urgency": "high",
                 "html_url": f"https://acme.pagerduty.com/incidents/{incident}",
                 "service": {"id": "PSVC1", "summary": "payments"}, "created_at": "2026-03-14T10:00:00Z"}}}).encode()


def test_pagerduty_signature_is_verified(client: TestClient, service: IntakeService) -> None:
    body = _pd_event("incident.triggered")
    r = client.post("/api/v1/pagerduty", content=body, headers={"X-PagerDuty-Signature": sign(body, "other")})
    assert r.status_code == 401 and "INCIDENTBOOK_PAGERDUTY_SECRET" in r.json()["detail"]
    assert client.post("/api/v1/pagerduty", content=body).status_code == 401
    # during a secret rotation PagerDuty sends several signatures; one matching is enough
    header = f"{sign(body, 'old')},{sign(body, PD_SECRET)}"
    assert client.post("/api/v1/pagerduty", content=body, headers={"X-PagerDuty-Signature": header}).status_code == 202
    resolved = _pd_event("incident.resolved")
    assert client.post("/api/v1/pagerduty", content=resolved,
                       headers={"X-PagerDuty-Signature": sign(resolved, PD_SECRET)}).status_code == 202
    first, second = drain(service)
    inc = service.store.get_incident(first.incident_id)
    assert (inc.service, inc.severity, inc.title) == ("payments", "critical", "Payments API is down")
    assert second.incident_id == first.incident_id
    [alert] = service.store.alerts(inc.id)
    assert alert.status == "resolved"


def test_generic_alert_opens_an_incident(client: TestClient, service: IntakeService) -> None:
    r = client.post("/api/v1/alerts", headers=AUTH, json={
        "alertname": "DiskFull", "service": "db", "severity": "warning", "summary": "db volume at 97%"})
    assert r.status_code == 202
    [done] = drain(service)
    inc = service.store.get_incident(done.incident_id)
    assert (inc.alertname, inc.service, inc.title) == ("DiskFull", "db", "db volume at 97%")


def test_alerts_on_dependent_services_join_the_failing_incident(client: TestClient, service: IntakeService) -> None:
    for body in (_am("db"), _am("checkout", "HighLatency"), _am("frontend"), _am("payments"), _am("inventory")):
        assert client.post("/api/v1/alertmanager", content=body, headers=AUTH).status_code == 202
    db, checkout, frontend, payments, inventory = drain(service)
    assert db.created
    # checkout and frontend call db (directly or through checkout): symptoms of the db incident
    assert checkout.incident_id == frontend.incident_id == db.incident_id
    assert checkout.joined == db.incident_id and not checkout.created
    # payments is a sibling of db (both called by checkout), inventory is unknown: their own incidents
    assert payments.created and inventory.created
    alerts = service.store.alerts(db.incident_id)
    assert {a.labels["service"] for a in alerts} == {"db", "checkout", "frontend"}
    joined = [e for e in service.store.timeline(db.incident_id) if e.kind == "symptoms_joined"]
    assert "checkout depends on db" in joined[0].summary
    assert service.queue.counts()["runbook"] == {"queued": 3}


def test_incidents_page_escapes_alert_text_and_links_notebooks(client: TestClient, service: IntakeService) -> None:
    client.post("/api/v1/alertmanager", content=_am("checkout", title="<script>alert(1)</script>"), headers=AUTH)
    [done] = drain(service)
    nb = service.cfg.incidents_dir / done.incident_id / "notebook.ipynb"
    service.store.set_runbook(done.incident_id, "generic", str(nb))
    assert client.get("/").status_code == 401
    page = client.get("/", headers=AUTH).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert f'href="http://lab.example:8888/lab/tree/incidents/{done.incident_id}/notebook.ipynb"' in page
    listed = client.get("/api/v1/incidents", headers=AUTH).json()["incidents"]
    assert listed[0]["id"] == done.incident_id and listed[0]["alerts"] == 1
    assert client.get("/api/v1/incidents").status_code == 401


def test_metrics_and_health(client: TestClient, service: IntakeService) -> None:
    client.post("/api/v1/alertmanager", content=_am("checkout"), headers=AUTH)
    client.post("/api/v1/alertmanager", content=_am("checkout"), headers=AUTH)
    client.post("/api/v1/alertmanager", content=_am("checkout"))
    text = client.get("/metrics", headers=AUTH).text
    assert 'incidentbook_alerts_received_total{source="alertmanager"} 2.0' in text
    assert 'incidentbook_payloads_deduplicated_total{source="alertmanager"} 1.0' in text
    assert 'incidentbook_requests_rejected_total{reason="unauthorized"} 1.0' in text
    assert 'incidentbook_work_queued{kind="alert"} 1.0' in text
    assert "incidentbook_ack_seconds_bucket" in text
    assert client.get("/healthz").json()["queue"] == {"alert": {"queued": 1}}
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert {"/api/v1/alertmanager", "/api/v1/pagerduty", "/api/v1/alerts"} <= set(paths)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "incidentbook")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "INCIDENTBOOK_TOKEN"}
    env["INCIDENTBOOK_HOME"] = str(tmp_path)
    r = _cli("serve", "--no-lab", "--port", "1", env=env)
    assert r.returncode == 2 and "INCIDENTBOOK_TOKEN" in r.stderr and "Traceback" not in r.stderr
    r = _cli("serve", "--no-lab", "--no-auth", "--host", "0.0.0.0", "--port", "1", env=env)
    assert r.returncode == 2 and "only allowed on a loopback host" in r.stderr
