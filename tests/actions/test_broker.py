"""Write actions through the broker: a kernel asks, an authenticated person approves, it runs once.

The broker is real (Unix socket, SO_PEERCRED), the cluster is the loopback kube-apiserver
stand-in of tests/actions/kubeapi.py driven by the real `kubernetes` client (no kube-apiserver
binary can be installed here); see tests/actions/brokerfix.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidentbook import actions
from incidentbook.actions import ActionContext
from incidentbook.errors import ActionDenied, ApprovalRequired, BadInput
from tests.actions.brokerfix import LiveBroker, live_broker, nobody_can_run
from tests.actions.kubeapi import KubeAPI


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        api.add("shop", "search", replicas=30)
        api.add("billing", "ledger", replicas=2)
        api.add("payments", "payments", replicas=3)
        yield api


@pytest.fixture
def live(kube: KubeAPI) -> Iterator[LiveBroker]:
    with live_broker(kube) as lb:
        yield lb


@pytest.fixture
def kernel(live: LiveBroker) -> Iterator[dict[str, Any]]:
    """What a live notebook kernel would do: ask the broker over its socket."""
    state: dict[str, Any] = {"headless": False, "shown": [], "proposed": []}

    def provider() -> ActionContext:
        def propose(p: dict[str, Any]) -> str:
            state["proposed"].append(p)
            return f"P{len(state['proposed'])}"

        return ActionContext(user="alice", headless=state["headless"], broker=live.client.call, incident_id="",
                             proposal_id="P1", propose=propose, show=state["shown"].append)

    actions.set_context_provider(provider)
    yield state
    actions.set_context_provider(None)


def cli(live: LiveBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "incidentbook.cli", *args, "--socket", str(live.socket)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def writes(kube: KubeAPI) -> list[Any]:
    return [r for r in kube.requests if r[0] == "PATCH" and r[2].get("dryRun") != "All"]


def test_a_kernel_request_is_only_a_pending_action_with_the_dry_run(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.scale("checkout", 5, namespace="shop", reason="absorb retry storm")
    assert act.status == "pending" and writes(live.kube) == []
    assert any(r[0] == "PATCH" and r[2].get("dryRun") == "All" for r in live.kube.requests)
    assert "replicas 3 -> 5" in kernel["shown"][0] and "does not approve" in kernel["shown"][0]
    # Re-running the cell (or Run All after a restart) is the same action, not a second one.
    again = actions.scale("checkout", 5, namespace="shop", reason="absorb retry storm")
    assert again.id == act.id and len(live.broker.list()) == 1


def test_cli_approval_executes_once_and_never_again(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.scale("checkout", 5, namespace="shop")
    res = cli(live, "actions", "approve", act.id)
    assert res.returncode == 2 and "confirmation" in res.stderr  # no terminal, no --yes: nothing approved
    assert writes(live.kube) == []
    res = cli(live, "actions", "approve", act.id, "--yes")
    assert res.returncode == 0, res.stderr
    assert f"{act.id} executed" in res.stdout
    assert live.kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    assert len(writes(live.kube)) == 1
    res = cli(live, "actions", "approve", act.id, "--yes")
    assert res.returncode == 2 and "cannot run again" in res.stderr
    # The approved cell run again: the broker answers with the executed action; nothing runs.
    again = actions.scale("checkout", 5, namespace="shop")
    assert again.id == act.id and again.status == "executed" and "does not run again" in kernel["shown"][-1]
    assert len(writes(live.kube)) == 1
    events = [e for e, _ in live.audit_events()]
    assert events == ["requested", "approved", "executed"]


def test_approval_is_bound_to_the_hash_of_what_runs(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.restart("checkout", namespace="shop")
    bad = live.raw({"op": "approve", "id": act.id, "hash": "0" * 64})
    assert not bad["ok"] and "hash mismatch" in bad["error"]
    assert writes(live.kube) == []


def test_a_process_started_from_a_kernel_cannot_approve(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.restart("checkout", namespace="shop")
    for marker in ("ipykernel_launcher", "papermill", "nbmake"):
        ans = live.raw({"op": "approve", "id": act.id, "hash": act.hash}, argv0_extra=marker)
        assert not ans["ok"] and ans["type"] == "ApprovalRequired", ans
    assert writes(live.kube) == [] and live.broker.get(act.id).status == "pending"


def test_the_kernel_cannot_approve_with_the_magic_api(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.restart("checkout", namespace="shop")
    with pytest.raises(ApprovalRequired, match="cannot approve"):
        actions.approve(act.id)
    assert writes(live.kube) == []


@pytest.mark.skipif(not nobody_can_run(), reason="needs root to run the second person as the OS user nobody")
def test_production_needs_a_second_os_user(live: LiveBroker, kernel: dict[str, Any]) -> None:
    act = actions.scale("payments", 4, namespace="payments")
    assert act.environment == "production" and act.status == "pending"
    own = cli(live, "actions", "approve", act.id, "--yes")
    assert own.returncode == 1 and "requested by you" in own.stderr
    # Whatever the message or the environment claims, the approver is the socket peer's OS user.
    ans = live.raw({"op": "approve", "id": act.id, "hash": act.hash, "user": "root", "via": "cli"}, user="nobody")
    assert ans["ok"], ans
    assert ans["action"]["status"] == "executed"
    assert [p["who"] for p in ans["action"]["approvals"]] == ["nobody"]
    assert live.kube.deployments[("payments", "payments")]["spec"]["replicas"] == 4


def test_environment_is_decided_by_the_broker_from_the_namespace(live: LiveBroker, kernel: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTBOOK_ENVIRONMENT", "staging")
    act = actions.restart("payments", namespace="payments")
    assert act.environment == "production"
    assert live.broker.get(act.id).second_approver


def test_policy_denials_are_audited_and_nothing_is_written(live: LiveBroker, kernel: dict[str, Any]) -> None:
    with pytest.raises(ActionDenied, match="namespace 'billing' is on no environment's allowlist"):
        actions.restart("ledger", namespace="billing")
    with pytest.raises(ActionDenied, match="blast radius exceeded.*changes 7 replicas, limit is 3"):
        actions.scale("checkout", 10, namespace="shop")
    with pytest.raises(ActionDenied, match="blast radius exceeded.*replaces 30 pods, limit is 10"):
        actions.restart("search", namespace="shop")
    with pytest.raises(ActionDenied, match="'rollout_undo' is not allowed in environment 'production'"):
        actions.rollout_undo("payments", namespace="payments")
    assert writes(live.kube) == []
    assert [e for e, _ in live.audit_events()] == ["denied", "denied", "denied"]


def test_rollout_undo_and_restart_do_what_they_say(live: LiveBroker, kernel: dict[str, Any]) -> None:
    undo = actions.rollout_undo("checkout", namespace="shop")
    assert "revision 2 to 1" in undo.summary
    live.broker.approve(__import__("incidentbook.actions.broker", fromlist=["Identity"]).Identity("carol", "cli"),
                        undo.id, undo.hash)
    tmpl = live.kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert tmpl["spec"]["containers"][0]["image"] == "shop/checkout:v2.3.1"
    assert "pod-template-hash" not in tmpl["metadata"]["labels"]


def test_headless_write_becomes_a_proposal_and_never_reaches_the_broker(live: LiveBroker,
                                                                        kernel: dict[str, Any]) -> None:
    kernel["headless"] = True
    with pytest.raises(ApprovalRequired, match="proposal P1"):
        actions.scale("checkout", 4, namespace="shop")
    assert kernel["proposed"][0]["kind"] == "write"
    assert kernel["proposed"][0]["code"] == "ib.act.scale('checkout', 4, namespace='shop')"
    assert live.kube.requests == [] and live.broker.list() == []


def test_no_broker_is_a_one_line_error(tmp_path: Path) -> None:
    from incidentbook.actions.broker import BrokerClient

    actions.set_context_provider(lambda: ActionContext(user="alice", headless=False,
                                                       broker=BrokerClient(tmp_path / "none.sock").call))
    try:
        with pytest.raises(ApprovalRequired, match="no action broker is listening"):
            actions.restart("checkout", namespace="shop")
    finally:
        actions.set_context_provider(None)


def test_without_the_extension_no_action_runs() -> None:
    actions.set_context_provider(None)
    with pytest.raises(ApprovalRequired, match="load the extension"):
        actions.restart("checkout", namespace="shop")


def test_bad_arguments_are_refused_before_the_broker(live: LiveBroker, kernel: dict[str, Any]) -> None:
    with pytest.raises(BadInput, match="replicas"):
        actions.scale("checkout", -1, namespace="shop")
    ans = live.raw({"op": "request", "verb": "delete", "target": {"name": "x", "namespace": "shop"}})
    assert not ans["ok"] and "not a write action" in ans["error"]
    ans = live.raw({"op": "request", "verb": "restart", "target": {"name": "../x\n", "namespace": "shop"}})
    assert not ans["ok"] and "not a Kubernetes name" in ans["error"]


def test_serve_takes_write_credentials_away_from_what_it_starts(tmp_path: Path, kube: KubeAPI,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.actions.broker import kernel_env, socket_path, start_in_process
    from incidentbook.config import load_config

    home = tmp_path / "w"
    home.mkdir()
    (home / "incidentbook.toml").write_text('[actions.environments.staging]\nnamespaces = ["shop"]\n'
                                            'actions = ["restart"]\n')
    kc = str(kube.kubeconfig(tmp_path / "kubeconfig"))
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", kc)
    monkeypatch.setenv("INCIDENTBOOK_AUDIT_KEY", "k" * 32)
    running = start_in_process(load_config(start=home))
    try:
        import os

        assert "KUBECONFIG" not in os.environ and "INCIDENTBOOK_AUDIT_KEY" not in os.environ
        assert "KUBECONFIG" not in kernel_env({"KUBECONFIG": kc, "PATH": "/bin"})
        assert running.broker.actions.kubeconfig == kc  # the broker kept them
        from incidentbook.actions.broker import BrokerClient, Identity

        a = BrokerClient(socket_path(home)).call("request", verb="restart",
                                                  target={"namespace": "shop", "name": "checkout"})["action"]
        running.broker.approve(Identity("carol", "cli"), a["id"], a["hash"])
        assert len(writes(kube)) == 1
    finally:
        running.close()
    import os

    assert os.environ["KUBECONFIG"] == kc  # given back when serve stops
