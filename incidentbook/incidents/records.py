"""What the store hands out: plain dataclasses, detached from any database session."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

IncidentStatus = Literal["open", "closed"]
RunbookStatus = Literal["pending", "running", "succeeded", "failed"]

#: Timeline event kinds the loop writes; other lower_snake_case kinds are accepted too.
EVENT_KINDS: frozenset[str] = frozenset({
    "alert_received", "alert_resolved", "incident_opened", "runbook_started", "runbook_finished",
    "runbook_failed", "status_changed", "closed", "note", "cell_executed", "proposal_approved",
    "action",
})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _jsonable(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in asdict(obj).items():
        out[k] = _iso(v) if isinstance(v, datetime) else v
    return out


@dataclass(frozen=True)
class Incident:
    """One incident: an alert group from first notification until a human closes it."""

    id: str
    group_key: str
    title: str
    status: IncidentStatus
    severity: str
    alertname: str
    service: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    created: datetime
    updated: datetime
    closed_at: datetime | None = None
    closed_by: str | None = None
    summary: str | None = None
    root_cause: str | None = None
    runbook: str | None = None
    runbook_status: RunbookStatus = "pending"
    runbook_error: dict[str, Any] | None = None
    notebook: str | None = None
    bundle: str | None = None
    external_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO 8601 UTC) for `--json` output."""
        return _jsonable(self)


@dataclass(frozen=True)
class Alert:
    """One alert of an incident, identified by its fingerprint (or a hash of its labels)."""

    incident_id: str
    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None = None
    notifications: int = 1

    @property
    def alertname(self) -> str:
        """The alert's `alertname` label."""
        return self.labels.get("alertname", "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO 8601 UTC)."""
        return _jsonable(self)


@dataclass(frozen=True)
class TimelineEvent:
    """One entry of an incident's timeline."""

    id: int
    incident_id: str
    timestamp: datetime
    kind: str
    actor: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (timestamp as ISO 8601 UTC)."""
        return _jsonable(self)


@dataclass(frozen=True)
class RunbookRun:
    """One execution of a runbook for an incident."""

    id: int
    incident_id: str
    runbook: str
    status: Literal["running", "succeeded", "failed"]
    started: datetime
    finished: datetime | None = None
    cell_index: int | None = None
    ename: str = ""
    evalue: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO 8601 UTC)."""
        return _jsonable(self)


@dataclass(frozen=True)
class IngestOutcome:
    """What one webhook notification did to the store.

    `created` is True when the notification opened the incident. The alert lists hold alert
    fingerprints: `new_alerts` were not known, `updated_alerts` changed (re-fired, new end time or
    annotations), `resolved_alerts` resolved with this notification, `unchanged_alerts` were a
    plain repeat.
    """

    incident: Incident
    created: bool
    payload_id: int
    new_alerts: list[str] = field(default_factory=list)
    updated_alerts: list[str] = field(default_factory=list)
    resolved_alerts: list[str] = field(default_factory=list)
    unchanged_alerts: list[str] = field(default_factory=list)

    @property
    def deduplicated(self) -> bool:
        """True when the notification landed on an incident that already existed."""
        return not self.created

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["incident"] = self.incident.to_dict()
        return d
