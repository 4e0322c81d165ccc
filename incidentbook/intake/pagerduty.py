"""PagerDuty v3 webhooks: signature verification and conversion to an alert group.

PagerDuty signs the raw body with HMAC-SHA256 under the subscription's secret and sends
`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]` (several while a secret is being rotated).
Only incident events become alerts: `incident.triggered`, `.acknowledged`, `.escalated`,
`.reopened`, `.priority_updated`, `.reassigned` keep it firing, `incident.resolved` resolves it.
Other event types (annotations, status updates) are accepted and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from incidentbook.errors import InvalidPayload
from incidentbook.intake.alertmanager import AlertmanagerPayload, parse_alertmanager
from incidentbook.intake.sanitise import load_bounded

SIGNATURE_HEADER = "X-PagerDuty-Signature"
RESOLVED_EVENTS = frozenset({"incident.resolved"})
_URGENCY_SEVERITY = {"high": "critical", "low": "warning"}


def sign(body: bytes, secret: str) -> str:
    """The `X-PagerDuty-Signature` value PagerDuty sends for `body` under `secret`."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """True when one of the header's `v1=` signatures matches (compared in constant time)."""
    if not header or not secret:
        return False
    expected = sign(body, secret)
    ok = False
    for part in header.split(","):
        ok |= hmac.compare_digest(part.strip(), expected)
    return ok


def _field(obj: Any, path: str) -> Any:
    cur = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise InvalidPayload(f"`{path}` is missing; send PagerDuty's v3 webhook body unchanged")
        cur = cur[key]
    return cur


def parse_pagerduty(raw: bytes | str) -> AlertmanagerPayload | None:
    """A v3 webhook as an alert group (`groupKey` = `pagerduty:<incident id>`); None if not an incident event."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise InvalidPayload(f"payload is not UTF-8 (bad byte at offset {e.start}); send UTF-8 JSON") from None
    doc = load_bounded(text, "send PagerDuty's v3 webhook body")
    if not isinstance(doc, dict):
        raise InvalidPayload("payload is not a JSON object; send PagerDuty's v3 webhook body")
    event_type = str(_field(doc, "event.event_type"))
    if not event_type.startswith("incident."):
        return None
    data = _field(doc, "event.data")
    if not isinstance(data, dict):
        raise InvalidPayload("`event.data` must be an object; send PagerDuty's v3 webhook body")
    incident_id = str(_field(doc, "event.data.id"))
    service = data.get("service") or {}
    service_name = str(service.get("summary") or service.get("id") or "") if isinstance(service, dict) else ""
    title = str(data.get("title") or data.get("summary") or f"PagerDuty incident {incident_id}")
    status = "resolved" if event_type in RESOLVED_EVENTS else "firing"
    labels = {"alertname": "PagerDutyIncident", "pagerduty_incident": incident_id,
              "severity": _URGENCY_SEVERITY.get(str(data.get("urgency", "")), "warning")}
    if service_name:
        labels["service"] = service_name
    occurred = str(_field(doc, "event.occurred_at"))
    annotations = {"summary": title, "pagerduty_url": str(data.get("html_url") or "")}
    am = {
        "version": "4", "groupKey": f"pagerduty:{incident_id}", "status": status,
        "receiver": "pagerduty", "groupLabels": {"pagerduty_incident": incident_id},
        "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "",
        "alerts": [{"status": status, "labels": labels, "annotations": annotations,
                    "startsAt": str(data.get("created_at") or occurred),
                    "endsAt": occurred if status == "resolved" else "0001-01-01T00:00:00Z",
                    "generatorURL": annotations["pagerduty_url"], "fingerprint": f"pd-{incident_id}"[:64]}],
    }
    payload = parse_alertmanager(json.dumps(am), source="pagerduty")
    payload._raw = text
    return payload
