"""Intake: webhook payload parsing and validation (Alertmanager v4)."""

from incidentbook.intake.alertmanager import (
    MAX_PAYLOAD_BYTES,
    SUPPORTED_VERSION,
    AlertmanagerAlert,
    AlertmanagerPayload,
    parse_alertmanager,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "SUPPORTED_VERSION",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "parse_alertmanager",
]
