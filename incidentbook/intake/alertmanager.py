"""Alertmanager webhook payloads (version 4): validation with errors an on-call engineer can act on.

The shape is the body of Alertmanager's `webhook_config` receiver:
`version`, `groupKey`, `truncatedAlerts`, `status`, `receiver`, `groupLabels`, `commonLabels`,
`commonAnnotations`, `externalURL` and `alerts[]` (each with `status`, `labels`, `annotations`,
`startsAt`, `endsAt`, `generatorURL`, `fingerprint`). Unknown extra keys (Grafana adds a few)
are ignored, never rejected; the raw text is kept so the store can persist it verbatim.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from incidentbook.errors import InvalidPayload
from incidentbook.intake.sanitise import load_bounded

MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
SUPPORTED_VERSION = "4"

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "SUPPORTED_VERSION",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "parse_alertmanager",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class AlertmanagerAlert(_Model):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    # The store's column is 64 characters: PostgreSQL would refuse a longer one, SQLite not.
    fingerprint: str = Field(default="", max_length=64)

    @field_validator("starts_at", "ends_at", mode="after")
    @classmethod
    def _zero_time_is_none(cls, v: datetime | None) -> datetime | None:
        # Alertmanager sends Go's zero time ("0001-01-01T00:00:00Z") for "not set".
        if v is None or v.year <= 1:
            return None
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    @field_validator("labels", mode="after")
    @classmethod
    def _needs_alertname(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("missing `alertname`")
        if len(v.get("severity", "")) > 64:
            raise ValueError("`severity` is over 64 characters; use e.g. critical or warning")
        return v

    @property
    def alertname(self) -> str:
        """The alert's `alertname` label."""
        return self.labels["alertname"]

    @property
    def key(self) -> str:
        """Identity of the alert within its group: the fingerprint, or a hash of its labels."""
        if self.fingerprint:
            return self.fingerprint
        canon = json.dumps(self.labels, sort_keys=True, separators=(",", ":"))
        return "lh-" + hashlib.sha256(canon.encode()).hexdigest()[:16]


class AlertmanagerPayload(_Model):
    """A whole webhook notification: one alert group."""

    version: str
    group_key: str = Field(alias="groupKey", min_length=1)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")

    @field_validator("common_labels", mode="after")
    @classmethod
    def _short_severity(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v.get("severity", "")) > 64:
            raise ValueError("`severity` is over 64 characters; use e.g. critical or warning")
        return v

    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)

    _raw: str | None = PrivateAttr(default=None)

    @property
    def raw(self) -> str:
        """The payload as received (or re-serialised with Alertmanager's field names)."""
        if self._raw is not None:
            return self._raw
        return self.model_dump_json(by_alias=True)

    @property
    def firing(self) -> list[AlertmanagerAlert]:
        """Alerts still firing."""
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[AlertmanagerAlert]:
        """Alerts that have resolved."""
        return [a for a in self.alerts if a.status == "resolved"]

    def label(self, name: str) -> str:
        """A label common to the group, else the first alert's value, else ""."""
        if name in self.common_labels:
            return self.common_labels[name]
        for a in self.alerts:
            if name in a.labels:
                return a.labels[name]
        return ""

    def annotation(self, name: str) -> str:
        """An annotation common to the group, else the first alert's value, else ""."""
        if name in self.common_annotations:
            return self.common_annotations[name]
        for a in self.alerts:
            if name in a.annotations:
                return a.annotations[name]
        return ""


_FIX = "send the body Alertmanager's webhook_config receiver produces"


def _size(raw: bytes | str) -> int:
    if isinstance(raw, bytes):
        return len(raw)
    if len(raw) > MAX_PAYLOAD_BYTES or len(raw) * 4 <= MAX_PAYLOAD_BYTES:
        return len(raw)  # exact enough on both sides of the limit without encoding
    return len(raw.encode("utf-8", errors="surrogatepass"))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "payload"


def _describe(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    where = _loc(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        return f"`{where}` is missing; {_FIX}"
    if where.endswith(".labels") and "alertname" in first["msg"]:
        return f"`{where}` has no `alertname`; every alert needs labels.alertname, {_FIX}"
    if kind == "literal_error" and where.endswith("status"):
        return f"`{where}` is {first.get('input')!r}; use \"firing\" or \"resolved\""
    if kind == "too_short" and where == "alerts":
        return "`alerts` is empty; a notification needs at least one alert"
    return f"`{where}`: {first['msg'].lower()} (got {str(first.get('input'))[:60]!r}); {_FIX}"


def parse_alertmanager(raw: bytes | str, *, source: str = "alertmanager") -> AlertmanagerPayload:
    """Validate an Alertmanager webhook body (version 4) and return it as a model.

    Raises InvalidPayload with a one-line message naming the bad field and the fix. `source` is
    the intake converting its own body (`pagerduty`, `generic`), which may use its reserved keys.
    """
    size = _size(raw)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(
            f"payload is {size / 1024 / 1024:.1f} MB, over the {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB "
            "limit; lower `max_alerts` in Alertmanager's webhook_config"
        )
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidPayload(f"payload is not UTF-8 (bad byte at offset {e.start}); send UTF-8 JSON") from None
    else:
        text = raw
    data = load_bounded(text, "fix the JSON there")
    if not isinstance(data, dict):
        raise InvalidPayload(f"payload is a JSON {type(data).__name__}, not an object; {_FIX}")
    if "version" not in data:
        raise InvalidPayload(f"`version` is missing; only Alertmanager webhook version \"4\" is supported, {_FIX}")
    if str(data["version"]) != SUPPORTED_VERSION:
        raise InvalidPayload(
            f"unsupported `version` {data['version']!r}; only Alertmanager webhook version \"4\" "
            "is supported (Alertmanager >= 0.7 sends it)"
        )
    data["version"] = SUPPORTED_VERSION
    if "alerts" not in data:
        raise InvalidPayload(f"`alerts` is missing; {_FIX}")
    if not isinstance(data["alerts"], list):
        raise InvalidPayload(f"`alerts` must be a list, got a JSON {type(data['alerts']).__name__}; {_FIX}")
    if not data["alerts"]:
        raise InvalidPayload("`alerts` is empty; a notification needs at least one alert")
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as e:
        raise InvalidPayload(_describe(e)) from None
    if source == "alertmanager":
        _check_namespace(payload)
    payload._raw = text
    return payload


#: Group-key and fingerprint prefixes the other sources use: an Alertmanager body may not claim
#: them, so only PagerDuty can update a PagerDuty incident and only the generic endpoint a generic one.
RESERVED_GROUP_PREFIXES = ("pagerduty:", "generic:")
RESERVED_FINGERPRINT_PREFIXES = ("pd-", "g-")


def _check_namespace(payload: AlertmanagerPayload) -> None:
    if payload.group_key.startswith(RESERVED_GROUP_PREFIXES):
        raise InvalidPayload(f"`groupKey` {payload.group_key[:60]!r} starts with a prefix reserved for "
                             "another source; send Alertmanager's own groupKey")
    for i, a in enumerate(payload.alerts):
        if a.fingerprint.startswith(RESERVED_FINGERPRINT_PREFIXES):
            raise InvalidPayload(f"`alerts[{i}].fingerprint` {a.fingerprint[:60]!r} starts with a prefix "
                                 "reserved for another source; send Alertmanager's own fingerprint")
