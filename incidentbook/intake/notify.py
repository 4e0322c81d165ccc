"""Slack notification when an incident's notebook is ready (incoming webhook, slack_sdk).

The webhook URL is a secret: it comes from the environment variable named by
`[server] slack_webhook_env`. A failed post is logged, never fatal. The message (title,
hypothesis) is redacted of secrets before it is sent: Slack is outside the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from incidentbook.config import Config, secret_from_env
from incidentbook.errors import SourceError
from incidentbook.incidents import Incident, Store
from incidentbook.redact import Redactor


def top_hypothesis(store: Store, incident_id: str) -> str:
    """The first hypothesis of the incident's latest investigation, as one line ("" if none)."""
    latest: dict[str, Any] | None = None
    for ev in store.timeline(incident_id):
        if ev.kind == "investigation":
            latest = ev.data
    hyps = (latest or {}).get("hypotheses") or []
    if not hyps:
        return ""
    h = hyps[0]
    for key in ("title", "statement", "summary", "cause"):
        if h.get(key):
            return str(h[key])
    return str(h.get("id", ""))


def incident_message(incident: Incident, notebook_url: str, hypothesis: str) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for an opened incident."""
    sev = f"[{incident.severity}] " if incident.severity else ""
    text = f"{sev}{incident.id} opened: {incident.title}"
    lines = [f"*{sev}{incident.id}*: {incident.title}",
             f"runbook {incident.runbook or '-'}: {incident.runbook_status}"]
    if hypothesis:
        lines.append(f"top hypothesis: {hypothesis}")
    if notebook_url:
        lines.append(f"<{notebook_url}|open the notebook>")
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]


def slack_notifier(cfg: Config, store: Store, notebook_url: Callable[[Incident], str]) -> Callable[[str], None] | None:
    """A notify(incident_id) callable posting to Slack, or None when Slack is not configured."""
    env = cfg.server.slack_webhook_env
    if not env:
        return None
    url = secret_from_env(env, "Slack notification ([server] slack_webhook_env)")
    from slack_sdk.webhook import WebhookClient

    client = WebhookClient(url, timeout=10)

    def notify(incident_id: str) -> None:
        incident = store.get_incident(incident_id)
        text, blocks = incident_message(incident, notebook_url(incident), top_hypothesis(store, incident_id))
        redactor = Redactor.secrets_only(cfg)
        resp = client.send(text=redactor.redact(text), blocks=redactor.redact_obj(blocks))
        if resp.status_code >= 300:
            raise SourceError(f"Slack webhook answered {resp.status_code} ({resp.body[:100]}); "
                              f"check the URL in ${env}")

    return notify
