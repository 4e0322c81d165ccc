"""`serve` pages a human when an open incident is not mitigated within policy.toml's deadline.

The pager is a loopback server speaking the PagerDuty Events API v2 shape.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from incidentbook.actions import AuditLog, verify
from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.service import IntakeService
from tests.autonomy.test_escalation import PAYLOAD, Pager


def test_serve_escalates_an_unmitigated_incident_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pager = Pager()
    monkeypatch.setenv("PD_KEY", "R0UTING")
    (tmp_path / "policy.toml").write_text(
        f'[escalation]\nafter_minutes = 0.001\nkind = "pagerduty"\nurl = "{pager.url}"\nrouting_key_env = "PD_KEY"\n')
    cfg = Config(home=tmp_path)
    store = Store.from_config(cfg)
    svc = IntakeService(cfg, store, run_runbooks=False)
    svc.escalation_interval_s = 0.2
    try:
        svc.start()
        svc.submit("alertmanager", (PAYLOAD / "checkout_firing.json").read_text())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not pager.bodies:
            time.sleep(0.1)
        time.sleep(0.6)  # a few more rounds: still paged only once
    finally:
        svc.stop()
        pager.close()
    assert len(pager.bodies) == 1, pager.bodies
    assert pager.bodies[0]["routing_key"] == "R0UTING"
    (inc,) = store.list_incidents()
    assert "escalated" in [e.kind for e in store.timeline(inc.id)]
    assert [e["event"] for e in AuditLog(cfg.audit_log).entries()] == ["escalated"] and verify(cfg.audit_log).ok
    store.close()
