"""Recent deploys, config edits and flag flips on a service, close before its onset."""

from __future__ import annotations

from collections.abc import Iterable

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


def changes_near(changes: pd.DataFrame, service: str, onsets: Iterable[pd.Timestamp | None]) -> list[ChangeMatch]:
    """Changes to `service` shortly before (or just after) any of its signals' onsets, best first.

    Each signal of a service can start at its own time (a slow drift first, the errors a change
    caused later), so every onset is tried and each change keeps its best match.
    """
    if changes.empty or "service" not in changes.columns:
        return []
    mine = changes[changes["service"].astype(str) == service]
    best: dict[tuple[str, str], ChangeMatch] = {}
    for onset in {t for t in onsets if t is not None}:
        for m in correlate_changes(mine, onset):
            key = (str(m.timestamp), m.description)
            if key not in best or m.score > best[key].score:
                best[key] = m
    return sorted(best.values(), key=lambda m: -m.score)


def change_evidence(m: ChangeMatch) -> Evidence:
    """Evidence for a change near the onset."""
    lead = m.lead_s / 60
    when = f"{lead:.1f} min before the onset" if lead >= 0 else f"{-lead:.1f} min after the onset"
    return Evidence(summary=f"{m.kind} on {m.service} at {iso(m.timestamp)} ({when}): {m.description}",
                    source="changes", query=f"changes(service={m.service!r})",
                    value={"timestamp": iso(m.timestamp), "kind": m.kind, "lead_min": round(lead, 1)})
