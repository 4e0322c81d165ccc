"""%incident, %timeline, %note, %sources: the incident and its timeline."""

from __future__ import annotations

import html
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Int

from incidentbook.kernel_ext._common import BaseMagics, one_line_errors


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{v}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


@magics_class
class IncidentMagics(BaseMagics):
    """The bound incident: show it, bind to one, read and write its timeline."""

    timeline_limit = Int(50, help="How many timeline events %timeline shows by default.").tag(config=True)

    @magic_arguments()
    @argument("action", nargs="?", default="show", choices=["show", "use"],
              help="show (default): the bound incident; use ID: bind this notebook to incident ID")
    @argument("incident_id", nargs="?", help="the incident id for `use`, e.g. INC-20261123-0007")
    @line_magic
    @one_line_errors
    def incident(self, line: str) -> None:
        """Show the bound incident (alert, status, timeline, links) or bind one: %incident use INC-…"""
        args = parse_argstring(self.incident, line)
        if args.action == "use":
            if not args.incident_id:
                raise UsageError("%incident use needs an incident id, e.g. %incident use INC-20261123-0007")
            inc = self.session.bind(args.incident_id)
            print(f"This notebook is bound to {inc.id}: {inc.title} ({inc.status})")
            return
        iid = self.session.require()
        store = self.session.store
        inc = store.get_incident(iid)
        alerts = store.alerts(iid)
        events = store.timeline(iid)
        rows = [("Incident", f"<b>{html.escape(inc.id)}</b> {html.escape(inc.title)}"),
                ("Status", f"{inc.status} · severity {html.escape(inc.severity)} · runbook {inc.runbook or '-'} ({inc.runbook_status})"),
                ("Service", f"{html.escape(inc.service)} in {html.escape(inc.namespace or '-')}"),
                ("Opened", str(inc.created))]
        for a in alerts:
            link = f" <a href='{html.escape(a.generator_url)}' target='_blank'>source</a>" if a.generator_url else ""
            rows.append((f"Alert {a.alertname}", f"{a.status} since {a.starts_at}: "
                         f"{html.escape(a.annotations.get('summary', ''))}{link}"))
        if inc.external_url:
            rows.append(("Alertmanager", f"<a href='{html.escape(inc.external_url)}'>{html.escape(inc.external_url)}</a>"))
        rows.append(("Timeline", f"{len(events)} events (see %timeline)"))
        import re

        plain = "\n".join(f"{k}: {re.sub('<[^>]+>', '', v)}" for k, v in rows)
        display({"text/html": _table(rows), "text/plain": plain}, raw=True)

    @magic_arguments()
    @argument("-n", "--limit", type=int, default=None, help="show the last N events (default: timeline_limit)")
    @argument("-k", "--kind", action="append", default=None,
              help="only events of this kind (repeatable), e.g. proposal_approved, note, cell_executed")
    @argument("--all", action="store_true", help="include cell_executed events (hidden by default)")
    @line_magic
    @one_line_errors
    def timeline(self, line: str) -> Any:
        """Show the bound incident's timeline (who did what, when), newest last."""
        args = parse_argstring(self.timeline, line)
        import pandas as pd

        events = self.session.store.timeline(self.session.require())
        if args.kind:
            events = [e for e in events if e.kind in args.kind]
        elif not args.all:
            events = [e for e in events if e.kind != "cell_executed"]
        events = events[-(args.limit or self.timeline_limit):]
        rows = [{"time": e.timestamp.strftime("%Y-%m-%d %H:%M:%S UTC"), "kind": e.kind, "actor": e.actor,
                 "summary": e.summary} for e in events]
        return pd.DataFrame(rows, columns=["time", "kind", "actor", "summary"])

    @line_magic
    @one_line_errors
    def note(self, line: str) -> None:
        """Add a note to the incident timeline, signed with your user name.

        Usage: %note TEXT   (quotes optional), e.g. %note "paged the payments team"
        """
        text = line.strip().strip('"').strip("'")
        if not text:
            raise UsageError('%note needs text, e.g. %note "paged the payments team"')
        self.session.record("note", text, {"text": text})
        print(f"noted on {self.session.require()}")

    @magic_arguments()
    @argument("--summary", default=None, help='one or two sentences for the postmortem, quoted')
    @argument("--root-cause", dest="root_cause", default=None,
              help="a hypothesis id (e.g. H2, from %%hypotheses) or the root cause as quoted text")
    @line_magic
    @one_line_errors
    def close(self, line: str) -> None:
        """Close the bound incident: %close --summary "…" --root-cause H2 (then `incidentbook postmortem ID`)."""
        from incidentbook.postmortems import close_incident

        args = parse_argstring(self.close, line)
        def unquote(v: str | None) -> str | None:
            return v[1:-1] if v and len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v

        inc, _ = close_incident(self.session.store, self.session.require(), actor=self.session.user,
                                summary=unquote(args.summary), root_cause=unquote(args.root_cause))
        print(f"{inc.id} closed; next: incidentbook postmortem {inc.id}")

    @magic_arguments()
    @line_magic
    @one_line_errors
    def sources(self, line: str) -> Any:
        """Show each telemetry source's status (configured, reachable, or why not)."""
        parse_argstring(self.sources, line)
        import pandas as pd

        statuses = self.session.telemetry().status()
        return pd.DataFrame([{"source": s.name, "kind": s.kind, "ok": s.ok, "reason": s.reason} for s in statuses])
