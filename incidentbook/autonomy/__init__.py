"""Earned autonomy: per-environment policy for write actions (propose, cooldown with veto, auto),
temporary grants, escalation when an incident is not mitigated, all in the audit log."""

from incidentbook.autonomy.autopilot import (
    ActionRequest,
    Autopilot,
    Decision,
    Outcome,
    cooling_down,
    decide,
    veto,
)
from incidentbook.autonomy.escalate import EscalationFailed, Page, escalate_unmitigated
from incidentbook.autonomy.policy import (
    AutonomyPolicy,
    Escalation,
    Grant,
    Rule,
    grant_toml,
    load_policy,
    policy_path,
)

__all__ = ["ActionRequest", "Autopilot", "AutonomyPolicy", "Decision", "Escalation", "EscalationFailed", "Grant",
           "Outcome", "Page", "Rule", "cooling_down", "decide", "escalate_unmitigated", "grant_toml", "load_policy",
           "policy_path", "veto"]
