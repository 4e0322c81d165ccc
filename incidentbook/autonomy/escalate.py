"""Escalation: page a person when an open incident is not mitigated within `after_minutes`.

An incident counts as mitigated once its timeline holds an executed action (`action_executed`),
a `mitigated` event, or it is closed. Each incident is paged once (`escalated` on its timeline),
through the PagerDuty Events API v2 (`trigger` with the incident id as `dedup_key`) or a Slack
incoming webhook; the page is also an audit-log entry. Run `incidentbook autonomy escalate` from
cron or a systemd timer, or let `serve` call `escalate_unmitigated` periodically.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from incidentbook.actions.audit import AuditLog
from incidentbook.autonomy.policy import Escalation
from incidentbook.errors import IncidentbookError, NotConfigured

MITIGATING_EVENTS = ("action_executed", "mitigated", "closed")


class EscalationFailed(IncidentbookError):
    """The paging endpoint refused or could not be reached."""


@dataclass
class Page:
    """One escalation sent."""

    incident_id: str
    minutes_open: float
    status: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"incident": self.incident_id, "minutes_open": round(self.minutes_open, 1), "status": self.status}


def page_body(esc: Escalation, incident: Any, minutes: float) -> dict[str, Any]:
    """The request body for PagerDuty Events API v2 or a Slack webhook."""
    text = (f"{incident.id} ({incident.severity or 'unknown severity'}) is not mitigated after {minutes:.0f} min: "
            f"{incident.title}")
    if esc.kind == "slack":
        return {"text": f":rotating_light: {text}"}
    key_name = esc.routing_key_env
    key = os.environ.get(key_name, "") if key_name else ""
    if not key:
        raise NotConfigured(f"PagerDuty escalation needs the routing key in ${key_name}; export it "
                            "(the [escalation] routing_key_env names the variable)")
    sev = incident.severity if incident.severity in ("critical", "error", "warning", "info") else "error"
    return {"routing_key": key, "event_action": "trigger", "dedup_key": f"incidentbook-{incident.id}",
            "payload": {"summary": text[:1024], "source": "incidentbook", "severity": sev,
                        "custom_details": {"incident": incident.id, "service": incident.service,
                                           "notebook": incident.notebook}}}


def _post(url: str, body: dict[str, Any], timeout: float) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL comes from the policy file
            return int(resp.status)
    except urllib.error.HTTPError as e:
        raise EscalationFailed(f"paging endpoint {url} answered {e.code}; check [escalation] url and the key") from None
    except (urllib.error.URLError, OSError) as e:
        raise EscalationFailed(f"cannot reach paging endpoint {url} ({e}); check [escalation] url") from None


def escalate_unmitigated(esc: Escalation, store: Any, audit_path: str | Path,
                         now: datetime | None = None, *, log: AuditLog | None = None) -> list[Page]:
    """Page once for every open incident older than `after_minutes` with nothing mitigating it yet."""
    now = now or datetime.now(timezone.utc)
    url = os.environ.get(esc.url_env, "") if esc.url_env else esc.url
    if not url:
        raise NotConfigured(f"escalation needs a URL: set ${esc.url_env} or [escalation] url in policy.toml")
    pages = []
    for inc in store.list_incidents(status="open", limit=1000):
        age = now - inc.created
        if age < timedelta(minutes=esc.after_minutes):
            continue
        kinds = {ev.kind for ev in store.timeline(inc.id)}
        if kinds & set(MITIGATING_EVENTS) or "escalated" in kinds:
            continue
        minutes = age.total_seconds() / 60
        status = _post(url, page_body(esc, inc, minutes), esc.timeout_s)
        store.add_event(inc.id, "escalated", f"paged via {esc.kind}: not mitigated after {minutes:.0f} min",
                        actor="incidentbook-autonomy", data={"kind": esc.kind, "status": status})
        (log or AuditLog(audit_path)).append("escalated", user="incidentbook-autonomy", incident_id=inc.id, via=esc.kind,
                                    minutes_open=round(minutes, 1), status=status)
        pages.append(Page(inc.id, minutes, status))
    return pages
