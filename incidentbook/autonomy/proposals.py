"""From a runbook's write proposals to autonomous actions, where policy.toml allows it.

A headless runbook never writes: it proposes `ib.act.*` cells. After `incidentbook serve` runs a
runbook, each proposed write is handed to the Autopilot, which decides per environment,
severity, action kind, author and target: `propose` (the default: a person approves it at the
broker), `cooldown` (announce on the incident timeline, wait for a veto, then run through the
broker) or `auto`. Only a cell that is exactly one literal call is understood
(`ib.act.restart("checkout", namespace="shop")`), only when its target is within the incident's
blast radius (the alerting service, or the service of the hypothesis the proposal tests);
anything else stays a proposal for a person.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.autonomy.autopilot import ActionRequest, Autopilot, Decision, Outcome
from incidentbook.autonomy.policy import AutonomyPolicy, load_policy, policy_path

ACTION_KINDS = ("rollout_undo", "scale", "restart")


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def parse_action(code: str, default_namespace: str = "") -> tuple[str, str, str, dict[str, Any]] | None:
    """`(kind, name, namespace, params)` of the first literal `….act.<kind>(…)` call in `code`."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ACTION_KINDS and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "act"):
            continue
        args = [_literal(a) for a in node.args]
        kw = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
        name = args[0] if args else kw.get("name")
        if not isinstance(name, str) or not name:
            return None
        kind = node.func.attr
        params: dict[str, Any] = {}
        if kind == "scale":
            replicas = args[1] if len(args) > 1 else kw.get("replicas")
            if not isinstance(replicas, int):
                return None
            params["replicas"] = replicas
        namespace = kw.get("namespace") or (args[2] if kind == "scale" and len(args) > 2 else
                                            args[1] if kind != "scale" and len(args) > 1 else None)
        if kind == "rollout_undo" and isinstance(kw.get("to_revision"), int):
            params["to_revision"] = kw["to_revision"]
        return kind, name, str(namespace or default_namespace), params
    return None


def _only_one_call(code: str) -> bool:
    """Whether `code` (comments aside) is one expression statement: the call and nothing else."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Call)


def _hypothesis_services(store: Any, incident_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        events = store.timeline(incident_id)
    except Exception:  # no store (tests of the parser): no hypotheses known
        return out
    for ev in events:
        if ev.kind == "investigation":
            for h in (ev.data or {}).get("hypotheses", []):
                if h.get("id") and h.get("service"):
                    out[str(h["id"])] = str(h["service"])
    return out


def write_requests(notebook: str | Path, incident: Any, store: Any = None) -> list[ActionRequest]:
    """The write proposals of an executed incident notebook that autonomy may consider.

    Left out (they stay proposals for a person): cells that are more than one literal call, and
    targets outside the blast radius: neither the alerting service nor the hypothesis' service.
    """
    nb = nbformat.read(str(notebook), as_version=4)
    hyp_service = _hypothesis_services(store, incident.id) if store is not None else {}
    out = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("incidentbook", {}).get("proposal")
        if cell.cell_type != "code" or not meta or meta.get("kind") != "write":
            continue
        if not _only_one_call(cell.source):
            continue
        parsed = parse_action(cell.source, incident.namespace or "")
        if parsed is None:
            continue
        kind, name, namespace, params = parsed
        radius = {incident.service} | ({hyp_service[str(meta["hypothesis"])]} if meta.get("hypothesis")
                                       and str(meta["hypothesis"]) in hyp_service else set())
        if name not in radius or namespace != (incident.namespace or namespace):
            continue
        author = str(meta.get("author") or "incidentbook")
        if meta.get("model"):
            author += f":{meta['model']}"
        out.append(ActionRequest(kind, name, namespace, incident.severity or "", incident_id=incident.id,
                                 params=params, author=author, proposal=str(meta.get("id") or ""),
                                 reason=f"proposal {meta.get('id')}: {meta.get('rationale', '')}"[:300]))
    return out


def grants_autonomy(policy: AutonomyPolicy) -> bool:
    """Whether anything in the policy can act without a person (else there is nothing to do)."""
    return policy.default != "propose" or any(r.mode != "propose" for r in [*policy.rules, *policy.grants])


def act_on_proposals(cfg: Any, store: Any, incident_id: str, *, broker: Any = None,
                     executor_factory: Callable[[], Any] | None = None) -> list[Outcome]:
    """Submit an incident notebook's write proposals to the Autopilot; outcomes go on the timeline.

    `broker`: the running broker (serve's); by default one is built for this workspace.
    """
    from incidentbook.actions.broker import Broker
    from incidentbook.actions.policy import load_actions_config

    policy = load_policy(policy_path(cfg))
    if not grants_autonomy(policy):
        return []
    incident = store.get_incident(incident_id)
    if not incident.notebook or not Path(incident.notebook).is_file():
        return []

    def announce(req: ActionRequest, d: Decision) -> None:
        store.add_event(incident_id, "autonomy_cooldown",
                        f"{req.summary} runs in {d.cooldown_s:g} s unless vetoed: "
                        f"incidentbook autonomy veto {req.id}", actor="incidentbook-autonomy",
                        data={"request_id": req.id, "cooldown_s": d.cooldown_s, "policy": d.reason})

    if broker is None:
        broker = Broker.from_config(cfg, store, executor_factory=executor_factory)
    pilot = Autopilot(policy, load_actions_config(cfg), cfg.audit_log, announce=announce, broker=broker)
    outcomes = []
    for req in write_requests(incident.notebook, incident, store):
        outcome = pilot.submit(req)
        store.add_event(incident_id, "action_executed" if outcome.status == "executed" else "autonomy",
                        f"{req.summary}: {outcome.status} ({outcome.decision.mode}: {outcome.detail})"[:300],
                        actor="incidentbook-autonomy", data=outcome.to_dict())
        outcomes.append(outcome)
    return outcomes
