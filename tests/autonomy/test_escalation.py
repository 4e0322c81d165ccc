"""Escalation posts to a loopback server speaking the PagerDuty Events API v2 / Slack webhook shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from incidentbook.actions import AuditLog, verify
from incidentbook.autonomy import Escalation, EscalationFailed, escalate_unmitigated
from incidentbook.incidents import Store
from incidentbook.intake import parse_alertmanager

PAYLOAD = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"


class Pager:
    """Records POSTed JSON bodies; answers `status`."""

    def __init__(self, status: int = 202) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        pager = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                pager.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(pager.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/enqueue"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pager() -> Iterator[Pager]:
    p = Pager()
    yield p
    p.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'ib.db'}")
    raw = PAYLOAD / "checkout_firing.json"
    s.record_alerts(parse_alertmanager(raw.read_bytes()))
    yield s
    s.close()


def test_pages_once_when_not_mitigated_in_time(store: Store, pager: Pager, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", "R0UTING")
    esc = Escalation(after_minutes=15, kind="pagerduty", url=pager.url, routing_key_env="PD_KEY")
    inc = store.list_incidents()[0]
    audit = tmp_path / "audit.jsonl"
    assert escalate_unmitigated(esc, store, audit, now=inc.created + timedelta(minutes=10)) == []
    pages = escalate_unmitigated(esc, store, audit, now=inc.created + timedelta(minutes=16))
    assert [p.incident_id for p in pages] == [inc.id] and pager.bodies[0]["routing_key"] == "R0UTING"
    body = pager.bodies[0]
    assert body["event_action"] == "trigger" and body["dedup_key"] == f"incidentbook-{inc.id}"
    assert "not mitigated after 16 min" in body["payload"]["summary"]
    # paged once: the second run sees the `escalated` event
    assert escalate_unmitigated(esc, store, audit, now=inc.created + timedelta(minutes=30)) == []
    assert [e["event"] for e in AuditLog(audit).entries()] == ["escalated"] and verify(audit).ok


def test_an_executed_action_counts_as_mitigated(store: Store, pager: Pager, tmp_path: Path) -> None:
    inc = store.list_incidents()[0]
    store.add_event(inc.id, "action_executed", "rollout undo shop/checkout")
    esc = Escalation(after_minutes=1, kind="slack", url=pager.url)
    assert escalate_unmitigated(esc, store, tmp_path / "a.jsonl", now=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    assert pager.bodies == []


def test_a_refusing_endpoint_is_an_error_naming_it(store: Store, tmp_path: Path) -> None:
    p = Pager(status=400)
    try:
        esc = Escalation(after_minutes=1, kind="slack", url=p.url)
        with pytest.raises(EscalationFailed, match="answered 400"):
            escalate_unmitigated(esc, store, tmp_path / "a.jsonl", now=datetime.now(timezone.utc) + timedelta(hours=1))
        assert "text" in p.bodies[0]
    finally:
        p.close()
