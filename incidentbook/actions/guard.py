"""The kernel's side of write actions (`ib.act`): it asks, the broker decides.

A kernel holds no write credentials. `ib.act.scale(…)` and friends validate their arguments and
then, in a headless run (papermill, nbmake, no person at it), only propose the call as a write
cell and raise ApprovalRequired; in a live notebook they send a request to the action broker
(`incidentbook.actions.broker`), which checks the policy, computes the dry run with its own
credentials and records a pending action. The kernel shows that preview and how to approve it.
Nothing a kernel sends can approve or execute an action: re-running the cell, Run All or a
headless run return the same pending (or already executed) action.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from incidentbook.errors import ApprovalRequired, BadInput


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
    """Where an action is being asked for; the kernel extension provides one per cell."""

    user: str
    headless: bool
    #: Sends one operation to the broker: (op, body) -> answer. None: no broker configured.
    broker: Callable[..., dict[str, Any]] | None = None
    incident_id: str | None = None
    default_namespace: str = ""
    #: The proposal whose cell is running (so the broker ties the action to it).
    proposal_id: str | None = None
    #: Records a write proposal (headless). Gets a dict with id, code, rationale, kind, title.
    propose: Callable[[dict[str, Any]], str] | None = None
    #: Shows text to the user (the cell output).
    show: Callable[[str], None] = print
    #: Shows the Approve link under the preview (the kernel extension renders it).
    show_approval: Callable[[dict[str, Any]], None] | None = None
    audit_path: Path | None = None


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
    """One write action as the broker sees it (pending, executed, failed, vetoed), or a proposal."""

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
    hash: str = ""
    approvals: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        who = f", approved by {self.approved_by}" if self.approved_by else ""
        return f"<Action {self.id} {self.status}: {self.summary} (requested by {self.requested_by}{who})>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_broker(cls, a: dict[str, Any]) -> Action:
        """An Action from the broker's answer."""
        approvals = list(a.get("approvals") or [])
        return cls(str(a["id"]), str(a["verb"]), str(a["target"]["namespace"]), str(a["target"]["name"]),
                   dict(a.get("params") or {}), str(a["status"]), str(a.get("summary", "")),
                   str(a.get("environment", "")), str(a.get("requested_by", "")),
                   ", ".join(p.get("who", "") for p in approvals), str(a.get("hash", "")), approvals,
                   dict(a.get("result") or {}))


def _call_code(kind: str, name: str, namespace: str, params: dict[str, Any]) -> str:
    from incidentbook.proposals import python_call

    args: list[Any] = [name]
    if kind == "scale":
        args.append(params["replicas"])
    extra = {k: v for k, v in params.items() if k != "replicas" and v is not None}
    return python_call(f"ib.act.{kind}", *args, namespace=namespace, **extra)


def _preview(a: dict[str, Any], shown: Callable[[str], None]) -> None:
    aid = a["id"]
    if a["status"] == "executed":
        by = ", ".join(p.get("who", "") for p in a.get("approvals", []))
        shown(f"{aid} already ran ({a.get('summary')}; approved by {by}): it does not run again")
        return
    if a["status"] != "pending":
        shown(f"{aid} is {a['status']}: {a.get('summary')}")
        return
    who = "another person (not you)" if a.get("second_approver") else "a person"
    shown(f"Preview (server dry run accepted): {a.get('summary')}\n"
          f"{aid} is pending in {a.get('environment')}; nothing has changed. Running this cell does not approve "
          f"it: {who} approves with  incidentbook actions approve {aid}  or the Approve link below.")


def run_action(kind: str, name: str, namespace: str = "", *, dry_run: bool = False,
               reason: str = "", **params: Any) -> Action:
    """Ask for one write action: a proposal in a headless run, else a pending action at the broker."""
    ctx = _context()
    namespace = namespace or ctx.default_namespace
    if not namespace:
        raise BadInput(f"{kind} of {name!r} needs a namespace; pass namespace=\"…\"")
    if not isinstance(name, str) or not name:
        raise BadInput(f"{kind} needs a Deployment name (text), got {name!r}")
    params = {k: v for k, v in params.items() if v is not None}
    code = _call_code(kind, name, namespace, params)
    summary = f"{kind} {namespace}/{name}" + (f" to {params['replicas']} replicas" if kind == "scale" else "")
    # Unknown is treated as headless: nobody is known to be at the keyboard.
    if ctx.headless:
        pid = ""
        if ctx.propose is not None:
            pid = ctx.propose({"code": code, "kind": "write", "title": summary,
                               "rationale": reason or f"Write action {summary}; a person must review and approve it."})
        where = f" as proposal {pid}" if pid else ""
        raise ApprovalRequired(f"{summary} needs a person's approval; it was recorded{where}: open the incident "
                               "notebook, run that cell for a preview, then approve it")
    if ctx.broker is None:
        raise ApprovalRequired("no action broker is configured; start `incidentbook broker` in this workspace")
    answer = ctx.broker("request", incident=ctx.incident_id or "", proposal=ctx.proposal_id or "", verb=kind,
                        target={"namespace": namespace, "name": name}, params=params, reason=reason,
                        dry_run=dry_run)
    a = answer["action"]
    _preview(a, ctx.show)
    if a["status"] == "pending" and ctx.show_approval is not None:
        ctx.show_approval(a)
    return Action.from_broker(a)


def pending_actions(audit_path: Path | None = None) -> list[dict[str, Any]]:
    """Actions waiting for approval at the broker (oldest first).

    Outside a notebook, with `audit_path`: the requests in that log nobody has approved, vetoed
    or run yet (read only, for reports; the broker is the authority).
    """
    ctx = _provider() if _provider is not None else None
    if ctx is not None and ctx.broker is not None:
        return list(ctx.broker("list", status="pending")["actions"])
    if audit_path is None:
        return []
    from incidentbook.actions.audit import AuditLog

    open_: dict[str, dict[str, Any]] = {}
    for e in AuditLog(audit_path).entries():
        if e.get("event") == "requested" and isinstance(e.get("action"), dict):
            open_[str(e.get("action_id"))] = e["action"]
        elif e.get("event") in ("approved", "executed", "failed", "vetoed"):
            open_.pop(str(e.get("action_id")), None)
    return list(open_.values())


def approve(action_id: str) -> Action:
    """Kernels cannot approve: say where a person approves instead."""
    raise ApprovalRequired(f"a notebook cell cannot approve {action_id}: approve it from a terminal with  "
                           f"incidentbook actions approve {action_id}  or with the Approve link under its preview")


def rollout_undo(name: str, namespace: str = "", *, to_revision: int | None = None,
                 dry_run: bool = False, reason: str = "") -> Action:
    """Ask to roll a Deployment back to its previous revision (or `to_revision`)."""
    return run_action("rollout_undo", name, namespace, dry_run=dry_run, reason=reason, to_revision=to_revision)


def scale(name: str, replicas: int, namespace: str = "", *, dry_run: bool = False, reason: str = "") -> Action:
    """Ask to set a Deployment's replica count."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise BadInput(f"replicas must be a whole number >= 0, got {replicas!r}")
    return run_action("scale", name, namespace, dry_run=dry_run, reason=reason, replicas=replicas)


def restart(name: str, namespace: str = "", *, dry_run: bool = False, reason: str = "") -> Action:
    """Ask for a rolling restart of a Deployment's pods."""
    return run_action("restart", name, namespace, dry_run=dry_run, reason=reason)
