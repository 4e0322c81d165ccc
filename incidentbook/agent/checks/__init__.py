"""The rules investigator's checks, one concern per module; each returns `Finding`s."""

from incidentbook.agent.checks.common import Finding, Probe, baseline_end, service_of

__all__ = ["Finding", "Probe", "baseline_end", "service_of"]
