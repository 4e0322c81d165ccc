"""Poison payloads at the boundary and inside the queue, on SQLite and on a real PostgreSQL.

Each case is followed by good alerts that must all become incidents: one bad body never stops
intake. The in-queue poison is a database trigger (SQLite `RAISE(ABORT)`, PostgreSQL `RAISE
EXCEPTION` with a DataError SQLSTATE, as a NUL byte gives) that refuses one service's alert
rows, so the failure comes from the real store, not from a stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from incidentbook.intake.service import IntakeService
from tests.reliability.conftest import AUTH, am_body, drain


def _post(client: TestClient, body: str | dict[str, Any], path: str = "/api/v1/alertmanager") -> Any:
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=content, headers={**AUTH, "Content-Type": "application/json"})


def _good_alerts_all_become_incidents(client: TestClient, service: IntakeService, tag: str) -> None:
    for i in range(5):
        r = _post(client, am_body(f"{tag}-good-{i}"))
        assert r.status_code == 202, r.text
    drain(service)
    services = {i.service for i in service.store.list_incidents(limit=100)}
    assert {f"{tag}-good-{i}" for i in range(5)} <= services


def _surrogate(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"]["service"] = "SURROGATE"
    return json.dumps(doc).replace("SURROGATE", "\\ud800")


def _nul_value(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"]["service"] = "a\x00b"
    return json.dumps(doc)


def _nul_key(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"]["te\x00am"] = "x"
    return json.dumps(doc)


def _deep(doc: dict[str, Any]) -> str:
    depth = 100_000
    return json.dumps(doc)[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"


def _huge_label(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"]["pod"] = "p" * 1_000_000
    return json.dumps(doc)


def _many_keys(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"].update({f"l{i}": "v" for i in range(5_000)})
    return json.dumps(doc)


def _long_severity(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["labels"]["severity"] = "s" * 65  # PostgreSQL's column is 64: it used to differ
    return json.dumps(doc)


def _long_fingerprint(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["fingerprint"] = "f" * 65
    return json.dumps(doc)


def _claims_pagerduty(doc: dict[str, Any]) -> str:
    doc["groupKey"] = "pagerduty:P123ABC"
    return json.dumps(doc)


def _claims_generic_fingerprint(doc: dict[str, Any]) -> str:
    doc["alerts"][0]["fingerprint"] = "g-0123456789abcdef"
    return json.dumps(doc)


@pytest.mark.parametrize(("poison", "field", "why"), [
    (_surrogate, "alerts[0].labels.service", "lone surrogate"),
    (_nul_value, "alerts[0].labels.service", "NUL"),
    (_nul_key, "alerts[0].labels.<key>", "NUL"),
    (_deep, "nested", "levels deep"),
    (_huge_label, "alerts[0].labels.pod", "over the 65,536 limit"),
    (_many_keys, "alerts[0].labels", "keys, over the 1,000 limit"),
    (_long_severity, "alerts[0].labels", "severity"),
    (_long_fingerprint, "alerts[0].fingerprint", "64"),
    (_claims_pagerduty, "groupKey", "reserved for another source"),
    (_claims_generic_fingerprint, "alerts[0].fingerprint", "reserved for another source"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_poison_at_the_boundary_is_a_422_naming_the_field_and_intake_goes_on(
        poison: Any, field: str, why: str, client: TestClient, service: IntakeService) -> None:
    r = _post(client, poison(am_body("poisoned")))
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert field in detail and why in detail, detail
    assert "Traceback" not in r.text and len(detail) < 400 and "\n" not in detail
    assert service.queue.counts() == {}  # nothing stored for a refused body
    _good_alerts_all_become_incidents(client, service, "after")


def test_the_generic_and_pagerduty_endpoints_bound_their_bodies_too(client: TestClient, service: IntakeService) -> None:
    deep = '{"alertname": "X", "labels": ' + '{"a":' * 50_000 + '"v"' + "}" * 50_000 + "}"
    r = _post(client, deep, "/api/v1/alerts")
    assert r.status_code == 422 and "nested" in r.json()["detail"]
    r = _post(client, '{"alertname": "X", "service": "a\\u0000b"}', "/api/v1/alerts")
    assert r.status_code == 422 and "`service`" in r.json()["detail"] and "NUL" in r.json()["detail"]
    pd = {"event": {"event_type": "incident.triggered", "occurred_at": "2026-03-14T10:00:00Z",
                    "data": {"id": "P1", "title": "SURR"}}}
    r = _post(client, json.dumps(pd).replace("SURR", "\\udfff"), "/api/v1/pagerduty")
    assert r.status_code == 422 and "event.data.title" in r.json()["detail"]
    _good_alerts_all_become_incidents(client, service, "after-generic")


def test_a_generic_alert_cannot_touch_an_alertmanager_one(client: TestClient, service: IntakeService) -> None:
    """The reported attack: the generic endpoint sent Alertmanager's group key and fingerprint."""
    am = am_body("checkout", fp="aaaabbbbccccdddd")
    assert _post(client, am).status_code == 202
    [opened] = drain(service)
    forged = {"alertname": "HighErrorRate", "service": "checkout", "status": "resolved",
              "group_key": am["groupKey"], "fingerprint": "aaaabbbbccccdddd"}
    assert _post(client, forged, "/api/v1/alerts").status_code == 202
    [other] = drain(service)
    assert other.incident_id != opened.incident_id
    [alert] = service.store.alerts(opened.incident_id)
    assert alert.status == "firing" and alert.notifications == 1


def _install_poison_trigger(service: IntakeService) -> None:
    """A real store-side failure for alert rows of service `poison` (a DataError on PostgreSQL)."""
    with service.store._session(write=True) as s:
        if service.store.dialect == "sqlite":
            s.execute(text("CREATE TRIGGER poison BEFORE INSERT ON alerts "
                           "WHEN json_extract(NEW.labels, '$.service') = 'poison' "
                           "BEGIN SELECT RAISE(ABORT, 'poisoned row refused'); END"))
        else:
            s.execute(text("CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                           "IF NEW.labels->>'service' = 'poison' THEN "
                           "RAISE EXCEPTION 'poisoned row refused' USING ERRCODE = '22P05'; END IF; "
                           "RETURN NEW; END $$"))
            s.execute(text("CREATE TRIGGER poison BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION poison()"))


def _drop_poison_trigger(service: IntakeService) -> None:
    with service.store._session(write=True) as s:
        s.execute(text("DROP TRIGGER poison" + ("" if service.store.dialect == "sqlite" else " ON alerts")))


def _cli(cfg_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "incidentbook")
    env = {"INCIDENTBOOK_HOME": str(cfg_home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_poison_item_in_the_queue_fails_alone_and_is_kept_for_retry(client: TestClient, service: IntakeService) -> None:
    _install_poison_trigger(service)
    for name in ("before-0", "before-1", "poison", "after-0", "after-1"):
        assert _post(client, am_body(name)).status_code == 202
    results = drain(service)
    assert len(results) == 5
    failed = [r for r in results if r.error]
    assert len(failed) == 1 and "poisoned row refused" in failed[0].error
    assert "INSERT" not in failed[0].error and "[parameters" not in failed[0].error  # no SQL, no values
    services = {i.service for i in service.store.list_incidents(limit=10)}
    assert services == {"before-0", "before-1", "after-0", "after-1"}
    [item] = service.queue.failed_items()
    assert item.id == failed[0].item_id and json.loads(item.raw)["alerts"][0]["labels"]["service"] == "poison"

    # Retried while the cause is still there: failed again, and it never blocks later alerts.
    service.queue.retry(item.id)
    assert _post(client, am_body("after-2")).status_code == 202
    drain(service)
    assert [i.id for i in service.queue.failed_items()] == [item.id]
    assert "after-2" in {i.service for i in service.store.list_incidents(limit=10)}

    # Cause fixed: a retry turns it into its incident.
    _drop_poison_trigger(service)
    service.queue.retry(item.id)
    drain(service)
    assert service.queue.failed_items() == []
    assert "poison" in {i.service for i in service.store.list_incidents(limit=10)}


def test_intake_failed_retry_drop_on_the_command_line(client: TestClient, service: IntakeService) -> None:
    if service.store.dialect != "sqlite":
        pytest.skip("the command line opens the workspace's SQLite store; the queue logic is covered above")
    _install_poison_trigger(service)
    assert _post(client, am_body("poison")).status_code == 202
    drain(service)
    home = service.cfg.home
    out = _cli(home, "intake", "failed", "--json")
    assert out.returncode == 0, out.stderr
    [item] = json.loads(out.stdout)["failed"]
    assert "poisoned row refused" in item["error"] and json.loads(item["body"])["alerts"][0]["labels"]["service"] == "poison"
    assert "poisoned row" in _cli(home, "intake", "failed").stdout
    bad = _cli(home, "intake", "drop", "999")
    assert bad.returncode == 2 and "no intake item 999" in bad.stderr and "Traceback" not in bad.stderr
    assert _cli(home, "intake", "retry", str(item["id"])).returncode == 0
    again = _cli(home, "intake", "retry", str(item["id"]))
    assert again.returncode == 2 and "is queued, not failed" in again.stderr
    drain(service)
    dropped = _cli(home, "intake", "drop", str(item["id"]), "--json")
    assert dropped.returncode == 0 and json.loads(dropped.stdout) == {"id": item["id"], "state": "dropped"}
    assert json.loads(_cli(home, "intake", "failed", "--json").stdout) == {"failed": []}


def test_a_body_stored_before_the_boundary_checks_fails_alone(service: IntakeService, client: TestClient) -> None:
    """The reported case: a lone surrogate already in the queue used to kill the worker for good."""
    raw = _surrogate(am_body("poisoned"))
    service.queue.enqueue_alert("alertmanager", raw)
    assert _post(client, am_body("fine")).status_code == 202
    results = drain(service)
    assert [bool(r.error) for r in results] == [True, False]
    assert "lone surrogate" in results[0].error
    assert [i.service for i in service.store.list_incidents()] == ["fine"]
