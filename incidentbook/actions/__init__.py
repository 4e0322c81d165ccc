"""Guarded write actions (`ib.act`): rollout_undo, scale, restart.

Read-only is the default everywhere; these are the only writes. Each is previewed with a
server-side dry run, checked against the `[actions]` policy, needs a person running the cell
(headless runs turn it into a proposal and raise ApprovalRequired) and is recorded in the
hash-chained audit log `<home>/audit.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from incidentbook.actions.audit import AuditLog, AuditLogCorrupt, Verification
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


def verify(path: str | Path | None = None) -> Verification:
    """Verify the audit log's hash chain (default: `<home>/audit.jsonl` of the current config)."""
    if path is None:
        from incidentbook.config import load_config

        path = load_config().audit_log
    return _verify(path)


__all__ = ["ACTION_KINDS", "Action", "ActionContext", "ActionsConfig", "AuditLog", "AuditLogCorrupt",
           "EnvironmentPolicy", "Verification", "approve", "current_user", "load_actions_config",
           "pending_actions", "restart", "rollout_undo", "scale", "set_context_provider", "verify"]
