"""Recent deploys, config edits and flag flips on a service, close before its onset."""

from __future__ import annotations

import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.analysis.changes import ChangeMatch, correlate_changes
from incidentbook.telemetry.bundle import iso

KIND_OF_CHANGE = {"deploy": "bad_deploy", "rollout": "bad_deploy", "release": "bad_deploy",
                  "config": "config_change", "configmap": "config_change", "flag": "feature_flag",
                  "feature_flag": "feature_flag"}


def fault_kind_of(change_kind: str) -> str:
    """The fault kind a change of this kind would cause (deploy -> bad_deploy, …)."""
    return KIND_OF_CHANGE.get(change_kind.lower(), "config_change" if "conf" in change_kind.lower() else "bad_deploy")


def changes_near(changes: pd.DataFrame, service: str, onset: pd.Timestamp | None) -> list[ChangeMatch]:
    """Changes to `service` shortly before (or just after) `onset`, best first."""
    if onset is None or changes.empty or "service" not in changes.columns:
        return []
    mine = changes[changes["service"].astype(str) == service]
    return correlate_changes(mine, onset)


def change_evidence(m: ChangeMatch) -> Evidence:
    """Evidence for a change near the onset."""
    lead = m.lead_s / 60
    when = f"{lead:.1f} min before the onset" if lead >= 0 else f"{-lead:.1f} min after the onset"
    return Evidence(summary=f"{m.kind} on {m.service} at {iso(m.timestamp)} ({when}): {m.description}",
                    source="changes", query=f"changes(service={m.service!r})",
                    value={"timestamp": iso(m.timestamp), "kind": m.kind, "lead_min": round(lead, 1)})
