"""Investigators: deterministic rules (offline default) and model-backed ones."""

from incidentbook.agent.base import (
    FAULT_KINDS,
    Evidence,
    Hypothesis,
    Investigation,
    InvestigationContext,
    Investigator,
    Proposal,
    Signal,
    investigators,
)

__all__ = ["FAULT_KINDS", "Evidence", "Hypothesis", "Investigation", "InvestigationContext",
           "Investigator", "Proposal", "Signal", "investigators"]
