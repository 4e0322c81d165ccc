"""The guarded action API: policy, preview, approval, execution, audit.

Every write goes the same way: headless runs never write (the call becomes a write proposal and
raises ApprovalRequired, with no audit entry); otherwise the policy is checked (allowlist of
namespaces and actions for the environment, blast radius), the cluster is asked for a dry run
whose result is shown as the preview, and then the action runs, or, where the environment needs
a second person, waits for `%approve ACTION-ID` from someone else. Each step is appended to the
hash-chained audit log.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.actions.audit import AuditLog
from incidentbook.actions.kube import KubeExecutor, Plan, api_client
from incidentbook.actions.policy import ActionsConfig, EnvironmentPolicy
from incidentbook.errors import (
    ActionDenied,
    ApprovalRequired,
    BadInput,
    IncidentbookError,
    NotFound,
)


def current_user() -> str:
    """Who is at the keyboard: JUPYTERHUB_USER, then USER, then the login name."""
    for var in ("JUPYTERHUB_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


@dataclass
class ActionContext:
    """Where an action is being run from; the kernel extension provides one per cell."""

    user: str
    headless: bool
    audit_path: Path
    config: ActionsConfig
    incident_id: str | None = None
    default_namespace: str = ""
    #: Records a write proposal (headless). Gets a dict with id, code, rationale, kind, title.
    propose: Callable[[dict[str, Any]], str] | None = None
    #: Records a timeline event: (kind, summary, data).
    record: Callable[[str, str, dict[str, Any]], None] | None = None
    #: Shows text to the user (the cell output).
    show: Callable[[str], None] = print
    executor_factory: Callable[[], KubeExecutor] | None = None

    def executor(self) -> KubeExecutor:
        """The executor to use (a Kubernetes client built from the [actions] settings by default)."""
        if self.executor_factory is not None:
            return self.executor_factory()
        c = self.config
        return KubeExecutor(api_client(c.kubeconfig, c.context, c.in_cluster))


_provider: Callable[[], ActionContext | None] | None = None


def set_context_provider(provider: Callable[[], ActionContext | None] | None) -> None:
    """Install (or with None remove) the function that says where actions are being run from."""
    global _provider
    _provider = provider


def _context() -> ActionContext:
    ctx = _provider() if _provider is not None else None
    if ctx is None:
        raise ApprovalRequired(
            "write actions run only from a notebook cell a person runs; load the extension "
            "(%load_ext incidentbook) and run the action there"
        )
    return ctx


@dataclass
class Action:
    """One write action and where it stands (previewed, pending, executed, failed)."""

    id: str
    kind: str
    namespace: str
    name: str
    params: dict[str, Any]
    status: str
    summary: str
    environment: str
    requested_by: str
    approved_by: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        who = f", approved by {self.approved_by}" if self.approved_by else ""
        return f"<Action {self.id} {self.status}: {self.summary} (requested by {self.requested_by}{who})>"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _new_id() -> str:
    return f"ACT-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}"


def _call_code(kind: str, name: str, namespace: str, params: dict[str, Any]) -> str:
    args = [repr(name)]
    if kind == "scale":
        args.append(repr(params["replicas"]))
    args.append(f"namespace={namespace!r}")
    for k, v in params.items():
        if k != "replicas" and v is not None:
            args.append(f"{k}={v!r}")
    return f"ib.act.{kind}({', '.join(args)})"


def _plan(ex: KubeExecutor, kind: str, name: str, namespace: str, params: dict[str, Any]) -> Plan:
    if kind == "scale":
        return ex.plan_scale(name, namespace, int(params["replicas"]))
    if kind == "restart":
        return ex.plan_restart(name, namespace)
    return ex.plan_rollout_undo(name, namespace, params.get("to_revision"))


def _check_allowlist(pol: EnvironmentPolicy, env: str, kind: str, namespace: str) -> None:
    if kind not in pol.actions:
        raise ActionDenied(f"action {kind!r} is not allowed in environment {env!r} (allowed: {pol.actions}); "
                           f"add it to [actions.environments.{env}] actions if it should be")
    if not pol.allows_namespace(namespace):
        raise ActionDenied(f"namespace {namespace!r} is not on the allowlist of environment {env!r} "
                           f"({pol.namespaces}); add it to [actions.environments.{env}] namespaces if it should be")


def _check_blast_radius(pol: EnvironmentPolicy, env: str, plan: Plan) -> None:
    if plan.kind == "scale":
        if abs(plan.replicas_change) > pol.max_replicas_change:
            raise ActionDenied(f"blast radius exceeded: {plan.summary} changes {abs(plan.replicas_change)} replicas, "
                               f"limit is {pol.max_replicas_change} in {env!r}; scale in smaller steps")
        if plan.after.get("replicas", 0) > pol.max_replicas:
            raise ActionDenied(f"blast radius exceeded: {plan.summary} is above max_replicas={pol.max_replicas} in {env!r}")
    elif plan.pods_affected > pol.max_pods_restarted:
        raise ActionDenied(f"blast radius exceeded: {plan.summary} replaces {plan.pods_affected} pods, "
                           f"limit is {pol.max_pods_restarted} in {env!r}; ask the service owner")


def _audit_fields(ctx: ActionContext, action: Action) -> dict[str, Any]:
    return {"action_id": action.id, "kind": action.kind, "namespace": action.namespace, "name": action.name,
            "params": action.params, "environment": action.environment, "incident_id": ctx.incident_id,
            "summary": action.summary}


def _execute(ctx: ActionContext, audit: AuditLog, ex: KubeExecutor, plan: Plan, action: Action) -> Action:
    try:
        result = ex.apply(plan)
    except IncidentbookError as e:
        action.status = "failed"
        audit.append("failed", user=ctx.user, error=str(e), **_audit_fields(ctx, action))
        if ctx.record:
            ctx.record("action_failed", f"{action.id} failed: {e}", action.to_dict())
        raise
    action.status = "executed"
    action.result = {"generation": result.get("metadata", {}).get("generation")}
    audit.append("executed", user=ctx.user, approved_by=action.approved_by, **_audit_fields(ctx, action))
    if ctx.record:
        ctx.record("action_executed", f"{action.id}: {action.summary} (approved by {action.approved_by})", action.to_dict())
    ctx.show(f"Done: {action.id} {action.summary}")
    return action


def run_action(kind: str, name: str, namespace: str = "", *, dry_run: bool = False,
               reason: str = "", **params: Any) -> Action:
    """Run one write action through the guard (see the module docstring for the steps)."""
    ctx = _context()
    namespace = namespace or ctx.default_namespace
    if not namespace:
        raise BadInput(f"{kind} of {name!r} needs a namespace; pass namespace=\"…\"")
    code = _call_code(kind, name, namespace, params)
    env = ctx.config.current_environment
    summary = f"{kind} {namespace}/{name}" + (f" to {params['replicas']} replicas" if kind == "scale" else "")
    if ctx.headless:
        pid = ""
        if ctx.propose is not None:
            pid = ctx.propose({"code": code, "kind": "write", "title": summary,
                               "rationale": reason or f"Write action {summary}; a person must review and run it."})
        where = f" as proposal {pid}" if pid else ""
        raise ApprovalRequired(f"{summary} needs a person's approval; it was recorded{where}: open the incident "
                               "notebook and run that cell")
    action = Action(_new_id(), kind, namespace, name, {k: v for k, v in params.items() if v is not None},
                    "previewed", summary, env, ctx.user)
    audit = AuditLog(ctx.audit_path)
    try:
        pol = ctx.config.policy()
        _check_allowlist(pol, env, kind, namespace)
        ex = ctx.executor()
        plan = _plan(ex, kind, name, namespace, params)
        action.summary = plan.summary
        _check_blast_radius(pol, env, plan)
    except ActionDenied as e:
        action.status = "denied"
        audit.append("denied", user=ctx.user, reason=str(e), **_audit_fields(ctx, action))
        raise
    ex.apply(plan, dry_run=True)
    ctx.show(f"Preview (server dry run accepted): {plan.summary}")
    if dry_run:
        return action
    if pol.second_approver:
        action.status = "pending"
        audit.append("requested", user=ctx.user, reason=reason, **_audit_fields(ctx, action))
        if ctx.record:
            ctx.record("action_requested", f"{action.id} waits for a second approver: {plan.summary}", action.to_dict())
        ctx.show(f"{action.id} waits for a second person: they run  %approve {action.id}  (you cannot approve your own)")
        return action
    action.approved_by = ctx.user
    audit.append("approved", user=ctx.user, reason=reason, **_audit_fields(ctx, action))
    return _execute(ctx, audit, ex, plan, action)


def pending_actions(audit_path: Path | None = None) -> list[dict[str, Any]]:
    """Requested actions that nobody has approved yet (oldest first)."""
    path = audit_path or _context().audit_path
    open_: dict[str, dict[str, Any]] = {}
    for e in AuditLog(path).entries():
        aid = e.get("action_id")
        if e.get("event") == "requested":
            open_[aid] = e
        elif e.get("event") in ("approved", "executed", "failed", "cancelled"):
            open_.pop(aid, None)
    return list(open_.values())


def approve(action_id: str) -> Action:
    """Approve and run a pending action as a second person (not the one who requested it)."""
    ctx = _context()
    if ctx.headless:
        raise ApprovalRequired(f"{action_id} can only be approved by a person in a live notebook, not in a headless run")
    audit = AuditLog(ctx.audit_path)
    req = next((e for e in pending_actions(ctx.audit_path) if e.get("action_id") == action_id), None)
    if req is None:
        done = [e for e in audit.entries() if e.get("action_id") == action_id]
        if done:
            raise BadInput(f"{action_id} is not waiting for approval (last: {done[-1].get('event')} by {done[-1].get('user')})")
        raise NotFound(f"no action {action_id} in {ctx.audit_path}; list pending ones with %approve --list")
    if req.get("user") == ctx.user:
        raise ActionDenied(f"{action_id} was requested by you ({ctx.user}); another person must run %approve {action_id}")
    action = Action(action_id, req["kind"], req["namespace"], req["name"], dict(req.get("params") or {}),
                    "pending", req.get("summary", ""), req.get("environment", ""), req.get("user", ""))
    pol = ctx.config.policy()
    env = ctx.config.current_environment
    _check_allowlist(pol, env, action.kind, action.namespace)
    ex = ctx.executor()
    plan = _plan(ex, action.kind, action.name, action.namespace, action.params)
    _check_blast_radius(pol, env, plan)
    action.summary = plan.summary
    action.approved_by = ctx.user
    audit.append("approved", user=ctx.user, requested_by=action.requested_by, **_audit_fields(ctx, action))
    if ctx.record:
        ctx.record("action_approved", f"{action_id} approved by {ctx.user} (requested by {action.requested_by})",
                   action.to_dict())
    return _execute(ctx, audit, ex, plan, action)


def rollout_undo(name: str, namespace: str = "", *, to_revision: int | None = None,
                 dry_run: bool = False, reason: str = "") -> Action:
    """Roll a Deployment back to its previous revision (or `to_revision`)."""
    return run_action("rollout_undo", name, namespace, dry_run=dry_run, reason=reason, to_revision=to_revision)


def scale(name: str, replicas: int, namespace: str = "", *, dry_run: bool = False, reason: str = "") -> Action:
    """Set a Deployment's replica count."""
    if not isinstance(replicas, int) or replicas < 0:
        raise BadInput(f"replicas must be a whole number >= 0, got {replicas!r}")
    return run_action("scale", name, namespace, dry_run=dry_run, reason=reason, replicas=replicas)


def restart(name: str, namespace: str = "", *, dry_run: bool = False, reason: str = "") -> Action:
    """Rolling-restart a Deployment's pods."""
    return run_action("restart", name, namespace, dry_run=dry_run, reason=reason)
