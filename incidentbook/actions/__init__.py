"""Guarded write actions (`ib.act`): rollout_undo, scale, restart, through the action broker.

Read-only is the default everywhere; these are the only writes. A kernel only asks: the broker
(`incidentbook broker`, or inside `incidentbook serve`) holds the write credentials, checks the
`[actions]` policy, previews with a server-side dry run and records a pending action that an
authenticated person approves (`incidentbook actions approve ACT-…` or the Approve link).
Headless runs turn the call into a proposal and raise ApprovalRequired. Every step is in the
keyed, checkpointed audit log `<home>/audit.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from incidentbook.actions.audit import (
    AuditLog,
    AuditLogCorrupt,
    StoreAnchor,
    Verification,
    load_audit_key,
)
from incidentbook.actions.audit import verify as _verify
from incidentbook.actions.guard import (
    Action,
    ActionContext,
    approve,
    current_user,
    pending_actions,
    restart,
    rollout_undo,
    scale,
    set_context_provider,
)
from incidentbook.actions.policy import (
    ACTION_KINDS,
    ActionsConfig,
    EnvironmentPolicy,
    load_actions_config,
)


def verify(path: str | Path | None = None, key: bytes | None = None, anchor: object = None) -> Verification:
    """Verify the audit log (default: `<home>/audit.jsonl` of the current config, with the
    workspace's key and checkpoint when they exist)."""
    if path is None:
        from incidentbook.config import load_config
        from incidentbook.incidents import Store

        cfg = load_config()
        path = cfg.audit_log
        key = key if key is not None else load_audit_key(cfg.home)
        if anchor is None and key is not None:
            anchor = StoreAnchor(Store.from_config(cfg))
    return _verify(path, key, anchor)  # type: ignore[arg-type]


__all__ = ["ACTION_KINDS", "Action", "ActionContext", "ActionsConfig", "AuditLog", "AuditLogCorrupt",
           "EnvironmentPolicy", "StoreAnchor", "Verification", "load_audit_key", "approve", "current_user", "load_actions_config",
           "pending_actions", "restart", "rollout_undo", "scale", "set_context_provider", "verify"]
