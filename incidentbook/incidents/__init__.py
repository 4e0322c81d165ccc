"""Incidents: the store (SQLAlchemy; SQLite by default, PostgreSQL for teams) and its records."""

from incidentbook.incidents.records import (
    EVENT_KINDS,
    Alert,
    Incident,
    IngestOutcome,
    RunbookRun,
    TimelineEvent,
)
from incidentbook.incidents.store import Store, StoreError

__all__ = [
    "EVENT_KINDS",
    "Alert",
    "Incident",
    "IngestOutcome",
    "RunbookRun",
    "Store",
    "StoreError",
    "TimelineEvent",
]
