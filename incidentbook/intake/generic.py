"""A generic JSON alert, for senders that are neither Alertmanager nor PagerDuty.

    {"alertname": "DiskFull", "service": "db", "severity": "critical", "status": "firing",
     "summary": "…", "labels": {…}, "annotations": {…}, "starts_at": "2026-03-14T10:00:00Z",
     "fingerprint": "…", "group_key": "…"}

Only `alertname` is required. Alerts group by `group_key`, default `generic:{alertname, service}`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incidentbook.errors import InvalidPayload
from incidentbook.intake.alertmanager import AlertmanagerPayload, _describe, parse_alertmanager
from incidentbook.intake.sanitise import load_bounded


class GenericAlert(BaseModel):
    """The body of `POST /api/v1/alerts`."""

    model_config = ConfigDict(extra="forbid")

    alertname: str = Field(min_length=1, max_length=200)
    service: str = ""
    severity: str = Field(default="", max_length=64)
    status: Literal["firing", "resolved"] = "firing"
    summary: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    fingerprint: str = Field(default="", max_length=64)
    group_key: str = ""


def to_alertmanager(alert: GenericAlert, raw: str | None = None) -> AlertmanagerPayload:
    """The alert as a one-alert Alertmanager group, so one code path stores every source."""
    labels = {**alert.labels, "alertname": alert.alertname}
    for k in ("service", "severity"):
        if getattr(alert, k):
            labels[k] = getattr(alert, k)
    annotations = dict(alert.annotations)
    for k in ("summary", "description"):
        if getattr(alert, k):
            annotations[k] = getattr(alert, k)
    group = {k: labels[k] for k in ("alertname", "service") if k in labels}
    # Keys are namespaced: a generic alert can never update an Alertmanager or PagerDuty one.
    group_key = "generic:" + (alert.group_key or json.dumps(group, sort_keys=True, separators=(",", ":")))
    starts = alert.starts_at or datetime.now(timezone.utc)
    if alert.fingerprint and len(alert.fingerprint) <= 62:
        fp = "g-" + alert.fingerprint
    else:
        fp = "g-" + hashlib.sha256((alert.fingerprint or json.dumps(labels, sort_keys=True)).encode()).hexdigest()[:16]
    am = {
        "version": "4", "groupKey": group_key, "status": alert.status, "receiver": "generic",
        "groupLabels": group, "commonLabels": labels, "commonAnnotations": annotations,
        "alerts": [{"status": alert.status, "labels": labels, "annotations": annotations,
                    "startsAt": starts.isoformat(), "fingerprint": fp}],
    }
    payload = parse_alertmanager(json.dumps(am), source="generic")
    payload._raw = raw if raw is not None else alert.model_dump_json()
    return payload


def parse_generic(raw: bytes | str) -> AlertmanagerPayload:
    """Validate a generic alert body; InvalidPayload names the bad field."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise InvalidPayload(f"payload is not UTF-8 (bad byte at offset {e.start}); send UTF-8 JSON") from None
    doc = load_bounded(text, "send one JSON object")
    if not isinstance(doc, dict):
        raise InvalidPayload(f"payload is a JSON {type(doc).__name__}, not an object; send one JSON object")
    try:
        alert = GenericAlert.model_validate(doc)
    except ValidationError as e:
        raise InvalidPayload(_describe(e).replace("Alertmanager's webhook_config receiver produces",
                                                  "a generic alert with at least `alertname`")) from None
    return to_alertmanager(alert, text)
