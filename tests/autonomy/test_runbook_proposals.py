"""A runbook's write proposal runs on its own only where policy.toml says so.

The action goes through the broker to a loopback server speaking the kube-apiserver API
(tests/actions/kubeapi.py), since no kube-apiserver binary can be installed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from incidentbook.actions import AuditLog, verify
from incidentbook.autonomy.proposals import act_on_proposals, parse_action
from incidentbook.config import load_config
from incidentbook.incidents import Store
from incidentbook.intake import parse_alertmanager
from tests.actions.kubeapi import KubeAPI

PAYLOAD = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "checkout_firing.json"


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        api.add("shop", "checkout", replicas=3)
        yield api


def workspace(tmp_path: Path, kube: KubeAPI, policy: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    monkeypatch.delenv("INCIDENTBOOK_ENVIRONMENT", raising=False)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    (tmp_path / "incidentbook.toml").write_text(
        f'[actions]\nenvironment = "staging"\nkubeconfig = "{kubeconfig}"\n'
        '[actions.environments.staging]\nnamespaces = ["shop"]\nactions = ["restart"]\n')
    (tmp_path / "policy.toml").write_text(policy)
    cfg = load_config(start=tmp_path)
    store = Store.from_config(cfg)
    inc = store.record_alerts(parse_alertmanager(PAYLOAD.read_bytes())).incident
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('# proposal P1: restart checkout\nib.act.restart("checkout", namespace="shop")')
    cell.metadata["incidentbook"] = {"proposal": {"id": "P1", "kind": "write", "rationale": "stuck threads"}}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    path = tmp_path / "incidents" / inc.id / "notebook.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    store.set_runbook(inc.id, "generic", str(path))
    return cfg, store, inc


def test_cooldown_without_veto_runs_the_proposed_write(tmp_path: Path, kube: KubeAPI,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, store, inc = workspace(tmp_path, kube, '[[rules]]\nenvironment = "staging"\naction = "restart"\n'
                                'author = "incidentbook"\ntarget = "shop/checkout"\n'
                                'mode = "cooldown"\ncooldown_s = 0.3\n', monkeypatch)
    (out,) = act_on_proposals(cfg, store, inc.id)
    assert out.status == "executed", out.detail
    assert kube.writes, "the restart reached the cluster"
    kinds = [e.kind for e in store.timeline(inc.id)]
    assert "autonomy_cooldown" in kinds and "action_executed" in kinds
    assert "cooldown_started" in [e["event"] for e in AuditLog(cfg.audit_log).entries()]
    assert verify(cfg.audit_log).ok


def test_a_rule_that_does_not_name_the_author_runs_nothing(tmp_path: Path, kube: KubeAPI,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, store, inc = workspace(tmp_path, kube, '[[rules]]\nenvironment = "staging"\naction = "restart"\n'
                                'author = "claude:claude-sonnet-4-6"\ntarget = "shop/checkout"\n'
                                'mode = "auto"\n', monkeypatch)
    (out,) = act_on_proposals(cfg, store, inc.id)
    assert out.status == "proposed" and kube.writes == []


def test_default_policy_leaves_it_to_a_person(tmp_path: Path, kube: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, store, inc = workspace(tmp_path, kube, 'default = "propose"\n', monkeypatch)
    assert act_on_proposals(cfg, store, inc.id) == []
    assert kube.writes == [] and not Path(cfg.audit_log).exists()


def test_only_literal_act_calls_are_understood() -> None:
    assert parse_action('ib.act.restart("checkout", namespace="shop")') == ("restart", "checkout", "shop", {})
    assert parse_action('incidentbook.act.scale("cart", 6)', "shop") == ("scale", "cart", "shop", {"replicas": 6})
    assert parse_action("ib.act.restart(name)") is None
    assert parse_action("import os; os.system('kubectl delete ns shop')") is None
