"""The error hierarchy. Every message names the problem and says the fix."""

from __future__ import annotations


class IncidentbookError(Exception):
    """Root of every error incidentbook raises on purpose.

    `exit_code` is what the command line exits with: 2 for bad input, 1 for failures.
    """

    exit_code = 1


class BadInput(IncidentbookError):
    """The user gave us something we cannot use (payload, file, argument, config)."""

    exit_code = 2


class ConfigError(BadInput):
    """`incidentbook.toml` or an environment override is invalid."""


class NotConfigured(ConfigError):
    """Something optional is not set up here (a secret's environment variable, an SDK)."""


class InvalidPayload(BadInput):
    """A webhook payload failed validation."""


class NotFound(BadInput):
    """An incident, runbook, bundle or library entry does not exist."""


class RunbookError(BadInput):
    """A runbook notebook is invalid (metadata, parameters cell, regex, kernel)."""


class RunbookFailed(IncidentbookError):
    """A runbook raised, timed out or lost its kernel while executing.

    The partial notebook is still written; `cell_index`, `ename` and `evalue` say where.
    """

    def __init__(self, message: str, *, cell_index: int | None = None, ename: str = "",
                 evalue: str = "", notebook: str | None = None) -> None:
        super().__init__(message)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.notebook = notebook


class SourceError(IncidentbookError):
    """A telemetry source could not answer (unreachable, unauthorised, timed out, bad query)."""


class UnsupportedQuery(BadInput):
    """A query uses something the replay engine does not implement; it never guesses."""


class BundleError(BadInput):
    """A telemetry bundle is missing, corrupt or of a newer schema version."""


class ApprovalRequired(IncidentbookError):
    """A write action was attempted without a human approval (e.g. in a headless run)."""


class ActionDenied(IncidentbookError):
    """A write action is outside the policy (allowlist, blast radius, second approver)."""
