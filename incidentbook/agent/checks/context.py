"""Business context: planned events (launches, campaigns, maintenance) covering the window."""

from __future__ import annotations

from typing import Any

import pandas as pd

from incidentbook.telemetry.bundle import iso

LOAD_WORDS = ("launch", "campaign", "marketing", "sale", "promo", "load test", "loadtest", "traffic",
              "event", "release", "announcement", "newsletter", "black friday")


def planned_events(ctx_rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> list[dict[str, Any]]:
    """Planned events overlapping [start, end] (each as a plain dict with ISO times)."""
    if ctx_rows.empty or "start" not in ctx_rows.columns:
        return []
    out = []
    for _, r in ctx_rows.iterrows():
        s = pd.to_datetime(r["start"], utc=True)
        e = pd.to_datetime(r.get("end"), utc=True) if pd.notna(r.get("end")) else end
        if s <= end and e >= start:
            out.append({"start": iso(s), "end": iso(e), "kind": str(r.get("kind", "")),
                        "title": str(r.get("title", "")), "services": r.get("services") or [],
                        "details": r.get("details")})
    return out


def explains_load(ev: dict[str, Any]) -> bool:
    """Whether a planned event is the kind that brings more traffic (not e.g. a DB maintenance)."""
    text = f"{ev.get('kind', '')} {ev.get('title', '')}".lower()
    return any(w in text for w in LOAD_WORDS) or "maint" not in text
