"""Change correlation: which deploys, config edits and flag flips sit close before an onset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ChangeMatch:
    """A change near an onset and how strongly its timing points at it (0..1)."""

    timestamp: pd.Timestamp
    service: str
    kind: str
    description: str
    lead_s: float  # seconds from the change to the onset (positive = change came first)
    score: float
    row: dict[str, Any]


BEFORE = pd.Timedelta("30min")
AFTER = pd.Timedelta("3min")


def correlate_changes(changes: pd.DataFrame, onset: pd.Timestamp, before: pd.Timedelta = BEFORE,
                      after: pd.Timedelta = AFTER) -> list[ChangeMatch]:
    """Changes from `before` ahead of `onset` to `after` past it, closest-before first.

    Score falls linearly with the lead time; a change recorded just after the onset (clock skew,
    a slow rollout) still counts, at half weight.
    """
    if changes is None or changes.empty:
        return []
    ts = pd.to_datetime(changes["timestamp"], utc=True)
    out = []
    for (_, row), t in zip(changes.iterrows(), ts):
        lead = (onset - t).total_seconds()
        if -after.total_seconds() <= lead <= before.total_seconds():
            score = 1.0 - max(lead, 0.0) / before.total_seconds() * 0.7 if lead >= 0 else 0.5
            out.append(ChangeMatch(t, str(row.get("service", "")), str(row.get("kind", "")),
                                   str(row.get("description", "")), lead, round(score, 3), row.to_dict()))
    out.sort(key=lambda m: -m.score)
    return out
