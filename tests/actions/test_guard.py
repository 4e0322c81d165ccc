"""Guarded write actions through the real `kubernetes` client against a loopback server that
speaks the kube-apiserver API (no kube-apiserver binary can be installed here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidentbook import actions
from incidentbook.actions import ActionContext, ActionsConfig, AuditLog, verify
from incidentbook.errors import ActionDenied, ApprovalRequired, BadInput
from tests.actions.kubeapi import KubeAPI


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        api.add("shop", "search", replicas=30)
        api.add("billing", "ledger", replicas=2)
        yield api


def policy(kube: KubeAPI, tmp_path: Path, **env: Any) -> ActionsConfig:
    pol = {"namespaces": ["shop"], "actions": ["rollout_undo", "scale", "restart"],
           "max_replicas_change": 3, "max_pods_restarted": 10, **env}
    return ActionsConfig(environment="staging", kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                         environments={"staging": pol})


@pytest.fixture
def context(kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A live-notebook action context whose fields a test can change (user, headless, policy)."""
    monkeypatch.delenv("INCIDENTBOOK_ENVIRONMENT", raising=False)
    state: dict[str, Any] = {"user": "alice", "headless": False, "config": policy(kube, tmp_path),
                             "shown": [], "proposed": [], "recorded": []}

    def provider() -> ActionContext:
        def propose(p: dict[str, Any]) -> str:
            state["proposed"].append(p)
            return f"P{len(state['proposed'])}"

        return ActionContext(user=state["user"], headless=state["headless"], audit_path=tmp_path / "audit.jsonl",
                             config=state["config"], incident_id="INC-1", propose=propose,
                             record=lambda k, s, d: state["recorded"].append((k, s)),
                             show=state["shown"].append)

    actions.set_context_provider(provider)
    state["audit"] = tmp_path / "audit.jsonl"
    yield state
    actions.set_context_provider(None)


def audit_events(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["event"], e["user"]) for e in AuditLog(state["audit"]).entries()]


def test_scale_previews_with_a_server_dry_run_then_scales(kube: KubeAPI, context: dict[str, Any]) -> None:
    act = actions.scale("checkout", 5, namespace="shop", reason="absorb retry storm")
    assert act.status == "executed" and act.approved_by == "alice"
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 5
    patches = [(p, q) for m, p, q in kube.requests if m == "PATCH"]
    assert patches[0][1].get("dryRun") == "All" and "dryRun" not in patches[1][1]
    assert context["shown"][0].startswith("Preview") and "replicas 3 -> 5" in context["shown"][0]
    assert audit_events(context) == [("approved", "alice"), ("executed", "alice")]
    assert verify(context["audit"]).ok


def test_dry_run_only_changes_nothing(kube: KubeAPI, context: dict[str, Any]) -> None:
    act = actions.restart("checkout", namespace="shop", dry_run=True)
    assert act.status == "previewed" and kube.writes == []
    assert "3 pods replaced" in context["shown"][0]


def test_rollout_undo_restores_the_previous_template(kube: KubeAPI, context: dict[str, Any]) -> None:
    act = actions.rollout_undo("checkout", namespace="shop")
    assert "revision 2 to 1" in act.summary
    tmpl = kube.deployments[("shop", "checkout")]["spec"]["template"]
    assert tmpl["spec"]["containers"][0]["image"] == "shop/checkout:v2.3.1"
    assert "pod-template-hash" not in tmpl["metadata"]["labels"]


def test_restart_sets_the_restarted_at_annotation(kube: KubeAPI, context: dict[str, Any]) -> None:
    actions.restart("checkout", namespace="shop")
    ann = kube.deployments[("shop", "checkout")]["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in ann


def test_namespace_outside_the_allowlist_is_denied(kube: KubeAPI, context: dict[str, Any]) -> None:
    with pytest.raises(ActionDenied, match="namespace 'billing' is not on the allowlist"):
        actions.restart("ledger", namespace="billing")
    assert kube.writes == [] and audit_events(context) == [("denied", "alice")]


def test_action_not_allowed_in_the_environment(kube: KubeAPI, context: dict[str, Any], tmp_path: Path) -> None:
    context["config"] = policy(kube, tmp_path, actions=["scale"])
    with pytest.raises(ActionDenied, match="'restart' is not allowed in environment 'staging'"):
        actions.restart("checkout", namespace="shop")


def test_blast_radius(kube: KubeAPI, context: dict[str, Any]) -> None:
    with pytest.raises(ActionDenied, match="blast radius exceeded.*changes 7 replicas, limit is 3"):
        actions.scale("checkout", 10, namespace="shop")
    with pytest.raises(ActionDenied, match="blast radius exceeded.*replaces 30 pods, limit is 10"):
        actions.restart("search", namespace="shop")
    assert kube.writes == []


def test_no_policy_for_the_environment_denies(kube: KubeAPI, context: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTBOOK_ENVIRONMENT", "production")
    with pytest.raises(ActionDenied, match=r"no write-action policy for environment 'production'"):
        actions.scale("checkout", 4, namespace="shop")


def test_headless_write_becomes_a_proposal_and_leaves_no_audit_entry(kube: KubeAPI, context: dict[str, Any]) -> None:
    context["headless"] = True
    with pytest.raises(ApprovalRequired, match="proposal P1"):
        actions.scale("checkout", 4, namespace="shop")
    assert context["proposed"][0]["kind"] == "write"
    assert context["proposed"][0]["code"] == "ib.act.scale('checkout', 4, namespace='shop')"
    assert not context["audit"].exists() and kube.requests == []


def test_second_approver(kube: KubeAPI, context: dict[str, Any], tmp_path: Path) -> None:
    context["config"] = policy(kube, tmp_path, second_approver=True)
    act = actions.scale("checkout", 4, namespace="shop")
    assert act.status == "pending" and kube.writes == []
    assert [p["action_id"] for p in actions.pending_actions(context["audit"])] == [act.id]
    with pytest.raises(ActionDenied, match="requested by you"):
        actions.approve(act.id)
    context["user"] = "bob"
    done = actions.approve(act.id)
    assert done.status == "executed" and done.approved_by == "bob" and done.requested_by == "alice"
    assert kube.deployments[("shop", "checkout")]["spec"]["replicas"] == 4
    assert audit_events(context) == [("requested", "alice"), ("approved", "bob"), ("executed", "bob")]
    with pytest.raises(BadInput, match="not waiting for approval"):
        actions.approve(act.id)
    assert verify(context["audit"]).ok


def test_unknown_deployment_and_unreachable_cluster(kube: KubeAPI, context: dict[str, Any], tmp_path: Path) -> None:
    from incidentbook.errors import NotFound, SourceError

    with pytest.raises(NotFound, match="not found"):
        actions.scale("nope", 2, namespace="shop")
    cfg = policy(kube, tmp_path)
    cfg.kubeconfig = str(KubeAPI(url="http://127.0.0.1:9").kubeconfig(tmp_path / "dead"))
    context["config"] = cfg
    with pytest.raises(SourceError, match="unreachable"):
        actions.scale("checkout", 2, namespace="shop")


def test_without_the_extension_no_action_runs() -> None:
    actions.set_context_provider(None)
    with pytest.raises(ApprovalRequired, match="load the extension"):
        actions.restart("checkout", namespace="shop")


def test_policy_from_toml(tmp_path: Path) -> None:
    from incidentbook.actions import load_actions_config
    from incidentbook.errors import ConfigError

    p = tmp_path / "incidentbook.toml"
    p.write_text('[actions]\nenvironment = "production"\n[actions.environments.production]\n'
                 'namespaces = ["shop"]\nactions = ["scale"]\nsecond_approver = true\n')
    cfg = load_actions_config(path=p)
    assert cfg.policy().second_approver and cfg.policy().actions == ["scale"]
    p.write_text('[actions.environments.production]\nactions = ["delete_everything"]\n')
    with pytest.raises(ConfigError, match="delete_everything"):
        load_actions_config(path=p)
    p.write_text('[actions]\nenviroment = "x"\n')
    with pytest.raises(ConfigError, match="enviroment"):
        load_actions_config(path=p)
