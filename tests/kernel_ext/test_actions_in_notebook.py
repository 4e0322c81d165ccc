"""`ib.act` and `%approve` from notebook cells: policy errors are one line, approvals reach the
timeline. The Kubernetes side is the real client against a loopback kube-apiserver stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidentbook.actions import ActionsConfig, AuditLog
from incidentbook.kernel_ext import get_session
from tests.actions.kubeapi import KubeAPI


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        yield api


@pytest.fixture
def live(bound: Any, kube: KubeAPI, tmp_path: Path) -> Any:
    s = get_session(bound)
    s.actions_config = ActionsConfig(
        environment="production", kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
        environments={"production": {"namespaces": ["shop"], "actions": ["scale", "restart"],
                                     "max_replicas_change": 2, "second_approver": True}})
    return bound


def test_policy_errors_are_one_line_in_the_cell_output(live: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for code, expected in (('ib.act.restart("ledger", namespace="billing")', "ActionDenied: namespace 'billing'"),
                           ('ib.act.scale("checkout", 9)', "ActionDenied: blast radius exceeded"),
                           ('ib.act.rollout_undo("checkout")', "ActionDenied: action 'rollout_undo' is not allowed")):
        capsys.readouterr()
        res = live.run_cell(code)
        out = capsys.readouterr().out.strip()
        assert not res.success
        assert out.startswith(expected) and "\n" not in out and "Traceback" not in out, out


def test_second_person_approves_with_the_magic(live: Any, kube: KubeAPI, home: Path,
                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    live.run_cell('a = ib.act.scale("checkout", 4, reason="absorb retry storm")')  # namespace from the incident
    action = live.user_ns["a"]
    assert action.status == "pending" and kube.writes == []
    capsys.readouterr()
    live.run_cell(f"%approve {action.id}")
    assert "requested by you" in capsys.readouterr().err
    monkeypatch.setenv("USER", "bob")
    live.run_cell("pending = %approve --list")
    assert list(live.user_ns["pending"]["action"]) == [action.id]
    assert live.run_cell(f"%approve {action.id}").success
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 4
    assert [(e["event"], e["user"]) for e in AuditLog(home / "audit.jsonl").entries()] == [
        ("requested", "alice"), ("approved", "bob"), ("executed", "bob")]
    s = get_session(live)
    kinds = [(e.kind, e.actor) for e in s.store.timeline(s.require()) if e.kind.startswith("action_")]
    assert kinds == [("action_requested", "alice"), ("action_approved", "bob"), ("action_executed", "bob")]
