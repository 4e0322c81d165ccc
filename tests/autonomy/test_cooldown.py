"""Cooldown with a real clock (the window shortened by policy.toml): a veto inside the window
cancels the action; no veto runs it through the action broker, with the real `kubernetes` client
against the loopback kube-apiserver stand-in (tests/actions/kubeapi.py; no binary exists here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from incidentbook.actions import ActionsConfig, AuditLog, verify
from incidentbook.actions.audit import load_audit_key
from incidentbook.actions.broker import Broker
from incidentbook.autonomy import ActionRequest, Autopilot, cooling_down, load_policy, veto
from incidentbook.errors import BadInput
from tests.actions.kubeapi import KubeAPI

POLICY = """
default = "propose"

[[rules]]
environment = "staging"
severity = ["warning"]
action = ["restart", "scale"]
author = "incidentbook"
target = "shop/checkout"
mode = "cooldown"
cooldown_s = {window}

[[rules]]
environment = "staging"
action = "*"
severity = "critical"
mode = "propose"
"""


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        yield api


def autopilot(kube: KubeAPI, tmp_path: Path, window: float, monkeypatch: pytest.MonkeyPatch) -> Autopilot:
    monkeypatch.delenv("INCIDENTBOOK_ENVIRONMENT", raising=False)
    (tmp_path / "policy.toml").write_text(POLICY.format(window=window))
    actions = ActionsConfig(environment="staging", kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                            environments={"staging": {"namespaces": ["shop"], "actions": ["restart", "scale"]}})
    announced: list[str] = []
    broker = Broker(actions, tmp_path / "audit.jsonl", load_audit_key(tmp_path, create=True) or b"")
    ap = Autopilot(load_policy(tmp_path / "policy.toml"), actions, tmp_path / "audit.jsonl",
                   announce=lambda req, d: announced.append(req.id), broker=broker)
    ap.announced = announced  # type: ignore[attr-defined]
    return ap


def events(path: Path) -> list[str]:
    return [e["event"] for e in AuditLog(path).entries()]


def test_veto_within_the_window_cancels_the_action(kube: KubeAPI, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ap = autopilot(kube, tmp_path, 3.0, monkeypatch)
    req = ActionRequest("restart", "checkout", "shop", "warning", incident_id="INC-7", author="incidentbook")

    def bob_vetoes() -> None:
        deadline = time.monotonic() + 2
        while not cooling_down(ap.audit_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        veto(ap.audit_path, req.id, "bob", "mid-deploy, do not restart now", log=ap.audit)

    t = threading.Thread(target=bob_vetoes)
    t0 = time.monotonic()
    t.start()
    out = ap.submit(req)
    t.join()
    assert out.status == "vetoed" and out.vetoed_by == "bob"
    assert time.monotonic() - t0 < 2.5  # cancelled as soon as the veto landed, not at the window's end
    assert kube.writes == [] and ap.announced == [req.id]  # type: ignore[attr-defined]
    assert events(ap.audit_path) == ["autonomy_decision", "cooldown_started", "veto", "vetoed"]
    assert verify(ap.audit_path, ap.audit.key).ok
    with pytest.raises(BadInput, match="no longer cooling down"):
        veto(ap.audit_path, req.id, "carol", log=ap.audit)


def test_no_veto_runs_the_action_through_the_broker_after_the_window(kube: KubeAPI, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ap = autopilot(kube, tmp_path, 0.4, monkeypatch)
    t0 = time.monotonic()
    out = ap.submit(ActionRequest("scale", "checkout", "shop", "warning", params={"replicas": 5}, author="incidentbook"))
    waited = time.monotonic() - t0
    assert out.status == "executed" and waited >= 0.4
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    assert events(ap.audit_path) == ["autonomy_decision", "cooldown_started", "requested", "approved", "executed",
                                     "autonomy_executed"]
    entries = AuditLog(ap.audit_path).entries()
    assert entries[3]["who"] == "incidentbook-autonomy" and entries[3]["via"] == "autonomy"
    assert "cooldown" in entries[2]["action"]["reason"]
    assert verify(ap.audit_path, ap.audit.key).ok and cooling_down(ap.audit_path) == []


def test_the_broker_still_applies_the_blast_radius(kube: KubeAPI, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ap = autopilot(kube, tmp_path, 0.0, monkeypatch)
    out = ap.submit(ActionRequest("scale", "checkout", "shop", "warning", params={"replicas": 40}, author="incidentbook"))
    assert out.status == "denied" and "blast radius" in out.detail and kube.writes == []
    assert events(ap.audit_path)[-2:] == ["denied", "autonomy_denied"]


def test_propose_mode_runs_nothing(kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ap = autopilot(kube, tmp_path, 0.0, monkeypatch)
    out = ap.submit(ActionRequest("restart", "checkout", "shop", "critical", author="incidentbook"))
    assert out.status == "proposed" and kube.requests == []
    assert events(ap.audit_path) == ["autonomy_decision"]
