"""The Jupyter server extension behind the Approve link: the `lab` approval channel.

`GET <base>/incidentbook/actions/ACT-…` shows the pending action (target, dry run, requester,
hash) with an Approve button; `POST` to the same address approves it as the user the Jupyter
server authenticated (in team mode, the JupyterHub user), relayed to the broker with the relay
token and a one-time nonce fetched for that page. The kernel is not in this path: a cell, Run
All or a headless run cannot click the button, and the broker, not the page, decides.

Enable it with `--ServerApp.jpserver_extensions=incidentbook.actions.labext=True`
(`incidentbook serve` does). It reads the relay token from $INCIDENTBOOK_RELAY_TOKEN (removed from
the server's environment so kernels do not inherit it) or `<home>/broker/relay.token`.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from incidentbook.actions.broker import RELAY_TOKEN_ENV, BrokerClient, socket_path
from incidentbook.errors import IncidentbookError

_ID = r"(ACT-[A-Za-z0-9-]{1,40})"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "incidentbook.actions.labext"}]


def _home() -> Path:
    from incidentbook.config import load_config

    return Path(load_config().home)


def _relay_token(home: Path) -> str:
    try:
        return (home / "broker" / "relay.token").read_text().strip()
    except OSError:
        return ""


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font:15px system-ui,sans-serif;max-width:52em;margin:2em auto}dt{font-weight:600}"
            "code{background:#f3f3f3;padding:0 .2em}button{font-size:1.1em;padding:.4em 1.2em}</style>"
            "</head><body>" + body + "</body></html>")


#: Set by this extension in the server's environment (kernels inherit it): the URL prefix of its
#: Approve page, e.g. `/user/alice/incidentbook/actions/`. Not a secret.
APPROVE_URL_ENV = "INCIDENTBOOK_APPROVE_URL"


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.base.handlers import JupyterHandler
    from jupyter_server.utils import url_path_join
    from tornado import web

    home = _home()
    client = BrokerClient(socket_path(home))
    env_relay = os.environ.pop(RELAY_TOKEN_ENV, "")

    def relay_token() -> str:
        # Read per request: `serve` may start its broker (and write the token) after this server.
        return env_relay or _relay_token(home)
    base = url_path_join(serverapp.web_app.settings.get("base_url", "/"), "incidentbook", "actions")
    # Kernels the server starts inherit this and show the Approve link under a preview.
    os.environ[APPROVE_URL_ENV] = base

    class ActionPage(JupyterHandler):  # type: ignore[misc]
        """One action's page: review, then approve as the authenticated user."""

        def _user(self) -> str:
            u = self.current_user
            return str(getattr(u, "username", None) or getattr(u, "name", None) or u)

        def _render(self, action_id: str, note: str = "") -> None:
            try:
                a = client.call("show", id=action_id)["action"]
            except IncidentbookError as e:
                self.set_status(404 if "no action" in str(e) else 502)
                self.finish(_page(action_id, f"<p>{html.escape(str(e))}</p>"))
                return
            esc = html.escape
            rows = [("Status", a["status"]), ("What", a["summary"]), ("Environment", a["environment"]),
                    ("Requested by", f"{a['requested_by']} at {a['requested_at']}"),
                    ("Reason", a.get("reason") or "-"), ("Incident", a.get("incident") or "-"),
                    ("Dry run", f"{json.dumps(a['dry_run'].get('before'))} -> {json.dumps(a['dry_run'].get('after'))}"),
                    ("Approvals", ", ".join(f"{p['who']} ({p['via']})" for p in a["approvals"]) or "none"),
                    ("Hash", a["hash"])]
            body = f"<h1>{esc(a['id'])}</h1>" + (f"<p id='note'><strong>{esc(note)}</strong></p>" if note else "")
            body += "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd id='{esc(k.lower().replace(' ', '-'))}'>{esc(str(v))}</dd>"
                                     for k, v in rows) + "</dl>"
            if a["status"] == "pending":
                try:
                    nonce = client.call("nonce", id=action_id, relay_token=relay_token())["nonce"]
                except IncidentbookError as e:
                    body += f"<p>Approving from this page is not available: {esc(str(e))}</p>"
                else:
                    body += (f"<form method='post'><input type='hidden' name='_xsrf' value='{esc(self.xsrf_token.decode())}'>"
                             f"<input type='hidden' name='nonce' value='{esc(nonce)}'>"
                             f"<input type='hidden' name='hash' value='{esc(a['hash'])}'>"
                             f"<p>You are <strong>{esc(self._user())}</strong>. Approving runs it now.</p>"
                             f"<button id='approve' type='submit'>Approve {esc(a['id'])}</button></form>")
            self.finish(_page(a["id"], body))

        @web.authenticated
        def get(self, action_id: str) -> None:
            self._render(action_id)

        @web.authenticated
        def post(self, action_id: str) -> None:
            try:
                done = client.call("approve", id=action_id, via="lab", user=self._user(), relay_token=relay_token(),
                                   nonce=self.get_body_argument("nonce", ""), hash=self.get_body_argument("hash", ""))
                note = f"Approved by {self._user()}: {done['action']['status']}"
            except IncidentbookError as e:
                note = f"Not approved: {e}"
            self._render(action_id, note)

    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, _ID), ActionPage)])
    serverapp.log.info("incidentbook: Approve pages at %s/ACT-…", base)
