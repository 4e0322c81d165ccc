"""`ib.act` from notebook cells: a pending action at the broker, never an approval by the kernel.

The broker is real (Unix socket, SO_PEERCRED) and shares the workspace's store; the cluster is
the real `kubernetes` client against the loopback kube-apiserver stand-in (tests/actions/kubeapi.py,
no kube-apiserver binary can be installed here).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidentbook.actions.audit import StoreAnchor, load_audit_key
from incidentbook.actions.broker import Broker, BrokerClient, BrokerServer
from incidentbook.kernel_ext import get_session
from tests.actions.brokerfix import policy
from tests.actions.kubeapi import KubeAPI


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        yield api


@pytest.fixture
def live(bound: Any, kube: KubeAPI, home: Path) -> Iterator[Any]:
    s = get_session(bound)
    store = s.store
    broker = Broker(policy(kube, home), home / "audit.jsonl", load_audit_key(home, create=True) or b"",
                    anchor=StoreAnchor(store),
                    record=lambda inc, kind, summary, actor, data: store.add_event(inc, kind, summary, actor=actor,
                                                                                    data=data))
    server = BrokerServer(broker, home / "broker.sock")
    server.serve_in_thread()
    s.broker_client = BrokerClient(home / "broker.sock")
    yield bound
    server.close()


def writes(kube: KubeAPI) -> list[Any]:
    return [r for r in kube.requests if r[0] == "PATCH" and r[2].get("dryRun") != "All"]


def test_policy_errors_are_one_line_in_the_cell_output(live: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for code, expected in (('ib.act.restart("ledger", namespace="billing")', "ActionDenied: namespace 'billing'"),
                           ('ib.act.scale("checkout", 9)', "ActionDenied: blast radius exceeded")):
        capsys.readouterr()
        res = live.run_cell(code)
        out = capsys.readouterr().out.strip()
        assert not res.success
        assert out.startswith(expected) and "\n" not in out and "Traceback" not in out, out


def test_running_the_cell_again_and_spoofing_identity_never_approve(live: Any, kube: KubeAPI, home: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cell = '# proposal P9: scale checkout\na = ib.act.scale("checkout", 4, reason="absorb retry storm")'
    assert live.run_cell(cell).success  # namespace from the incident's labels
    action = live.user_ns["a"]
    assert action.status == "pending" and writes(kube) == []
    assert "does not approve" in capsys.readouterr().out
    # The kernel claims to be someone else, picks a laxer environment, tries the magic and the API.
    live.run_cell('import os; os.environ["USER"] = "bob"; os.environ["INCIDENTBOOK_ENVIRONMENT"] = "dev"')
    capsys.readouterr()
    live.run_cell(f"%approve {action.id}")
    assert "cannot approve" in capsys.readouterr().err
    live.run_cell(f'ib.act.approve("{action.id}")')
    # Re-running the same cell (Run All after a restart) is the same pending action.
    live.run_cell(cell)
    assert live.user_ns["a"].id == action.id and writes(kube) == []
    live.run_cell("pending = %approve --list")
    assert list(live.user_ns["pending"]["action"]) == [action.id]
    s = get_session(live)
    kinds = [e.kind for e in s.store.timeline(s.require())]
    assert "action_requested" in kinds and "action_approved" not in kinds
    # A person at a terminal approves; it runs once, in the right environment, as the OS user.
    res = subprocess.run([sys.executable, "-m", "incidentbook.cli", "actions", "approve", action.id, "--yes",
                          "--socket", str(home / "broker.sock")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 4 and len(writes(kube)) == 1
    timeline = [(e.kind, e.actor) for e in s.store.timeline(s.require()) if e.kind.startswith("action_")]
    import os
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    assert timeline == [("action_requested", me), ("action_approved", me), ("action_executed", me)]
    # Running the approved cell again does not run it again.
    capsys.readouterr()
    live.run_cell(cell)
    assert "does not run again" in capsys.readouterr().out and len(writes(kube)) == 1
