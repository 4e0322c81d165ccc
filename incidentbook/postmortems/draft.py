"""Draft a postmortem notebook from a closed incident.

The draft is `templates/postmortem.ipynb` with its `{{ placeholders }}` filled from the incident,
its timeline, its notebook and its telemetry bundle: summary, impact (computed by replaying the
bundle with PromQL), timeline, root cause (the confirmed hypothesis and the evidence cells that
tested it, with their outputs), contributing factors, what went well and what was hard, action
items, and the proposals nobody ran. Everything stays editable: it is a notebook of markdown.
"""

from __future__ import annotations

import copy
import html
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.errors import BadInput, NotFound

TEMPLATE_NAME = "postmortem.ipynb"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_HYP_ID = re.compile(r"^[Hh]\d+$")
#: Timeline kinds worth a line in the postmortem (cell_executed is noise; investigation is a board).
TIMELINE_KINDS = frozenset({
    "incident_opened", "alert_received", "alert_resolved", "runbook_started", "runbook_finished",
    "runbook_failed", "status_changed", "closed", "note", "proposal_approved", "action",
    "hypothesis_confirmed", "hypothesis_refuted", "investigation", "root_cause", "bundle_exported",
})
DEFAULT_SLO = 0.999
SLO_PERIOD = timedelta(days=30)


def template_path() -> Path:
    """The postmortem template: the source tree's `templates/`, or the one in the wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "templates" / TEMPLATE_NAME, here / "_data" / "templates" / TEMPLATE_NAME):
        if candidate.is_file():
            return candidate
    raise NotFound(f"the postmortem template {TEMPLATE_NAME} is missing; reinstall incidentbook")


# ---------------------------------------------------------------------------------- hypotheses

def investigation_state(events: list[Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest investigation on a timeline and its hypotheses with confirm/refute applied."""
    latest: dict[str, Any] | None = None
    verdicts: dict[str, tuple[str, str]] = {}
    for ev in events:
        if ev.kind == "investigation":
            latest, verdicts = ev.data, {}
        elif ev.kind in ("hypothesis_confirmed", "hypothesis_refuted"):
            verdicts[str(ev.data.get("hypothesis"))] = (ev.kind.split("_")[1], ev.data.get("note", ""))
    hyps = [dict(h) for h in (latest or {}).get("hypotheses", [])]
    for h in hyps:
        if h["id"] in verdicts:
            h["status"], h["verdict_note"] = verdicts[h["id"]]
    return latest, hyps


def looks_like_hypothesis_id(text: str) -> bool:
    """True for `H2` / `h2`: `--root-cause` names a hypothesis rather than giving text."""
    return bool(_HYP_ID.match(text.strip()))


def resolve_root_cause(events: list[Any], ref: str) -> dict[str, Any]:
    """The hypothesis `ref` (e.g. H2, any case) from the timeline's latest investigation.

    BadInput when there is no investigation, no such hypothesis, or it was refuted.
    """
    latest, hyps = investigation_state(events)
    if latest is None:
        raise BadInput(f"--root-cause {ref}: this incident has no investigation on its timeline; "
                       "give the root cause as text instead, e.g. --root-cause \"cache maxmemory too small\"")
    by_id = {h["id"].lower(): h for h in hyps}
    h = by_id.get(ref.strip().lower())
    if h is None:
        known = ", ".join(x["id"] for x in hyps) or "none"
        raise BadInput(f"--root-cause {ref}: no such hypothesis; the latest investigation has: {known}")
    if h.get("status") == "refuted":
        raise BadInput(f"--root-cause {ref}: {h['id']} was refuted ({h.get('verdict_note') or 'no reason given'}); "
                       "pick a hypothesis that is not refuted or give the root cause as text")
    return h


def root_cause_text(h: dict[str, Any]) -> str:
    """One line naming a hypothesis as the root cause (what `incidents show` prints)."""
    return f"{h['id']}: {h.get('statement', '')} [{h.get('fault_kind', 'unknown')} on {h.get('service', '?')}]"


# ---------------------------------------------------------------------------------- impact

@dataclass
class Impact:
    """What the incident cost, computed from its telemetry bundle."""

    start: str
    end: str
    duration_s: float
    services: list[str]
    requests: float | None = None
    failed_requests: float | None = None
    error_ratio: float | None = None
    slo: float = DEFAULT_SLO
    budget_burned: float | None = None  # fraction of the 30-day error budget
    queries: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def impact_window(incident: Any, alerts: list[Any], bundle_window: tuple[Any, Any] | None) -> tuple[datetime, datetime]:
    """From the first alert's start to the last resolution (or the close, within the bundle's window)."""
    starts = [_utc(a.starts_at) for a in alerts] or [_utc(incident.created)]
    start = min(starts)
    ends = [_utc(a.ends_at or a.resolved_at) for a in alerts if a.status == "resolved" and (a.ends_at or a.resolved_at)]
    if alerts and len(ends) == len(alerts):
        end = max(ends)
    else:
        end = _utc(incident.closed_at) if incident.closed_at else datetime.now(timezone.utc)
    if bundle_window is not None:
        ws, we = (_utc(x.to_pydatetime() if hasattr(x, "to_pydatetime") else x) for x in bundle_window)
        start, end = max(start, ws), min(end, we) if end > ws else we
    return start, max(end, start)


def _selector(services: list[str]) -> str:
    alt = "|".join(re.escape(s).replace("\\", "\\\\").replace('"', '\\"') for s in services)
    return f'service=~"{alt}"'


def compute_impact(bundle_path: str | Path | None, start: datetime, end: datetime, services: list[str],
                   slo: float = DEFAULT_SLO) -> Impact:
    """Duration, requests, failed (5xx) requests and 30-day error budget burned, by PromQL replay.

    The budget is `(1 - slo)` of the requests a 30-day period would see at the bundle's average
    request rate; `budget_burned` is the failed requests over that budget.
    """
    imp = Impact(start=_iso(start), end=_iso(end), duration_s=(end - start).total_seconds(),
                 services=list(services), slo=slo)
    if not bundle_path:
        imp.note = "no telemetry bundle: requests and error budget are unknown"
        return imp
    if not services:
        imp.note = "no service named by the alerts: requests and error budget are unknown"
        return imp
    from incidentbook.telemetry.sources import Telemetry

    tel = Telemetry.from_bundle(bundle_path)
    ws, we = (_utc(x.to_pydatetime()) for x in tel.bundle.window)
    sel = _selector(services)
    rng = max(int(imp.duration_s), 60)
    whole = max(int((we - ws).total_seconds()), 60)
    imp.queries = {
        "requests": f"sum(increase(http_requests_total{{{sel}}}[{rng}s]))",
        "failed_requests": f'sum(increase(http_requests_total{{{sel},code=~"5.."}}[{rng}s]))',
        "average_rate": f"sum(increase(http_requests_total{{{sel}}}[{whole}s])) / {whole}",
    }
    values: dict[str, float | None] = {}
    for name, q in imp.queries.items():
        res = tel.safe_query(q, we if name == "average_rate" else end)
        values[name] = float(res.data["value"].sum()) if res.status == "ok" else (0.0 if res.status == "no_data" else None)
        if res.status == "error":
            imp.note = f"query failed: {res.error}"
    imp.requests, imp.failed_requests = values["requests"], values["failed_requests"]
    if imp.requests:
        imp.error_ratio = (imp.failed_requests or 0.0) / imp.requests
    rate = values["average_rate"]
    if rate and imp.failed_requests is not None:
        budget = rate * SLO_PERIOD.total_seconds() * (1.0 - slo)
        imp.budget_burned = imp.failed_requests / budget if budget > 0 else None
    if imp.requests == 0 and not imp.note:
        imp.note = "the bundle has no http_requests_total for these services"
    return imp


def impact_figure(bundle_path: str | Path, services: list[str], start: str, end: str) -> Any:
    """A plotly figure of the 5xx error ratio per service over the bundle window, impact shaded."""
    from incidentbook.charts import timeseries_figure
    from incidentbook.telemetry.sources import Telemetry

    tel = Telemetry.from_bundle(bundle_path)
    ws, we = tel.bundle.window
    sel = _selector(services)
    q = (f'sum by (service) (rate(http_requests_total{{{sel},code=~"5.."}}[5m])) '
         f"/ sum by (service) (rate(http_requests_total{{{sel}}}[5m]))")
    res = tel.safe_query_range(q, ws, we)
    if res.status != "ok":
        return None
    return timeseries_figure(res.data, "5xx error ratio (impact window shaded)", window=(start, end))


def show_impact(bundle: str | Path, services: list[str], start: str, end: str) -> None:
    """Display the impact chart (used by the postmortem's impact cell; static HTML included)."""
    from IPython.display import display

    from incidentbook.charts import figure_bundle

    fig = impact_figure(bundle, services, start, end)
    if fig is None:
        print("No request metrics in the bundle for these services.")
        return
    display(figure_bundle(fig), raw=True)


# ---------------------------------------------------------------------------------- sections

def _md_escape(text: str) -> str:
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def _fmt_int(x: float | None) -> str:
    return "unknown" if x is None else f"{x:,.0f}"


def _fmt_duration(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def impact_md(imp: Impact) -> str:
    """The impact section's markdown."""
    lines = [f"- **Duration:** {_fmt_duration(imp.duration_s)} ({imp.start} to {imp.end})",
             f"- **Services:** {', '.join(imp.services) or 'unknown'}",
             f"- **Requests in the window:** {_fmt_int(imp.requests)}",
             f"- **Failed requests (5xx):** {_fmt_int(imp.failed_requests)}"
             + (f" ({imp.error_ratio:.2%} of requests)" if imp.error_ratio is not None else "")]
    if imp.budget_burned is not None:
        lines.append(f"- **Error budget burned:** {imp.budget_burned:.1%} of the 30-day budget "
                     f"at a {imp.slo:.1%} availability SLO")
    else:
        lines.append("- **Error budget burned:** unknown")
    if imp.note:
        lines.append(f"\n_{imp.note}_")
    if imp.queries:
        lines.append("\n<details><summary>How this was computed</summary>\n\n"
                     + "\n".join(f"- `{k}`: `{v}`" for k, v in imp.queries.items()) + "\n\n</details>")
    return "\n".join(lines)


def timeline_md(events: list[Any]) -> str:
    """The timeline section: one table row per meaningful event."""
    rows = ["| Time (UTC) | Who | What |", "|---|---|---|"]
    for e in events:
        if e.kind not in TIMELINE_KINDS:
            continue
        rows.append(f"| {e.timestamp.strftime('%Y-%m-%d %H:%M:%S')} | {_md_escape(e.actor)} | "
                    f"**{e.kind.replace('_', ' ')}**: {_md_escape(e.summary)} |")
    return "\n".join(rows) if len(rows) > 2 else "_No timeline events were recorded._"


def _evidence_lines(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in items:
        q = f" (`{e['query']}`)" if e.get("query") else ""
        out.append(f"  - {_md_escape(e.get('summary', ''))}{q}")
    return out


def root_cause_md(incident: Any, h: dict[str, Any] | None) -> str:
    """The root cause section: the confirmed hypothesis, or the closing text, or a prompt."""
    if h is None:
        if incident.root_cause:
            return f"{incident.root_cause}\n\n_Add the evidence that confirmed it below._"
        return "_No root cause was recorded at close. Write it here: what broke, and why._"
    lines = [f"**{h['id']}: {_md_escape(h.get('statement', ''))}**", "",
             f"- **Kind:** {h.get('fault_kind', 'unknown')} on **{h.get('service', '?')}** "
             f"({h.get('role', 'cause')}, {h.get('position', 'unknown')})",
             f"- **Status:** {h.get('status', 'open')}" + (f" ({_md_escape(h['verdict_note'])})" if h.get("verdict_note") else "")]
    if h.get("evidence_for"):
        lines += ["- **Evidence for:**", *_evidence_lines(h["evidence_for"])]
    if h.get("evidence_against"):
        lines += ["- **Evidence against:**", *_evidence_lines(h["evidence_against"])]
    return "\n".join(lines)


def contributing_md(hyps: list[dict[str, Any]], root: dict[str, Any] | None, notes: list[str]) -> str:
    """Other confirmed hypotheses, the symptoms the root cause explains, and the investigator's notes."""
    lines = []
    for h in hyps:
        if root is not None and h["id"] == root["id"]:
            continue
        if h.get("status") == "confirmed":
            lines.append(f"- {h['id']}: {_md_escape(h.get('statement', ''))} (confirmed)")
    if root is not None:
        for s in root.get("signals", []):
            if s.get("role") == "symptom":
                lines.append(f"- symptom: {_md_escape(s.get('name', ''))} on {s.get('service', '')}")
    lines += [f"- {_md_escape(n)}" for n in notes]
    return "\n".join(lines) if lines else "_What made this worse or harder to see? (monitoring gaps, retries, load)_"


def went_well_md(events: list[Any]) -> tuple[str, str]:
    """Prompts for 'what went well' and 'what was hard', seeded with facts from the timeline."""
    ran = [e for e in events if e.kind == "runbook_finished"]
    failed = [e for e in events if e.kind == "runbook_failed"]
    from incidentbook.proposals import counts_as_approval

    # Headless runs and Run All batches are not a person's decision; do not credit them as one.
    approved = [e for e in events if counts_as_approval(e.kind, e.data or {})]
    well = []
    if ran:
        well.append(f"- The runbook had the evidence ready in {ran[0].data.get('duration_s', '?')} s.")
    if approved:
        well.append(f"- {len(approved)} proposed cell(s) were run by a person.")
    hard = [f"- The runbook failed: {_md_escape(e.summary)}" for e in failed]
    well.append("- _Add what helped._")
    hard.append("- _Add what slowed the response down._")
    return "\n".join(well), "\n".join(hard)


def action_items_md(root: dict[str, Any] | None, closed_at: datetime | None) -> str:
    """The action items table, seeded with one item per confirmed cause."""
    due = ((closed_at or datetime.now(timezone.utc)) + timedelta(days=14)).strftime("%Y-%m-%d")
    rows = ["| Action | Owner | Due | Status |", "|---|---|---|---|"]
    if root is not None:
        rows.append(f"| Prevent a repeat of: {_md_escape(root.get('statement', ''))} | _owner_ | {due} | open |")
        rows.append(f"| Alert on the cause ({root.get('fault_kind', 'unknown')} on {root.get('service', '?')}), "
                    f"not only its symptoms | _owner_ | {due} | open |")
    else:
        rows.append(f"| _what will prevent a repeat_ | _owner_ | {due} | open |")
    return "\n".join(rows)


def not_taken_md(latest: dict[str, Any] | None, events: list[Any]) -> str:
    """Proposals that nobody ran, with their rationale."""
    approved = {str(e.data.get("proposal_id")) for e in events if e.kind == "proposal_approved"}
    proposals: dict[str, dict[str, Any]] = {}
    for h in (latest or {}).get("hypotheses", []):
        for p in h.get("proposals", []):
            proposals.setdefault(str(p["id"]), p)
    for e in events:
        if e.kind == "proposal" and "id" in e.data:
            proposals.setdefault(str(e.data["id"]), e.data)
    left = [p for pid, p in proposals.items() if pid not in approved]
    if not left:
        return "_Every proposal was run._" if proposals else "_No cells were proposed._"
    out = []
    for p in left:
        out.append(f"- **{p['id']}** ({p.get('kind', 'read')}, for {p.get('hypothesis') or '-'}): "
                   f"{_md_escape(p.get('rationale', ''))}\n\n  ```\n  " + str(p.get("code", "")).strip().replace("\n", "\n  ")
                   + "\n  ```")
    return "\n".join(out)


# ---------------------------------------------------------------------------------- the draft

@dataclass
class Draft:
    """A drafted postmortem: where it was written and the facts it was built from."""

    path: Path
    incident_id: str
    impact: Impact
    root_cause: dict[str, Any] | None
    evidence_cells: int


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook; BadInput with the path and the fix when it is missing or corrupt."""
    p = Path(path)
    try:
        return nbformat.read(p, as_version=4)
    except FileNotFoundError:
        raise NotFound(f"notebook {p} is missing; restore it or re-run the runbook") from None
    except (ValueError, nbformat.reader.NotJSONError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInput(f"notebook {p} is corrupt ({str(e).splitlines()[0][:120]}); restore it from a backup "
                       "or fix it in JupyterLab") from None


def evidence_cells(nb: Any, hypothesis_id: str | None) -> list[Any]:
    """Proposal cells of the incident notebook that tested `hypothesis_id` and were run."""
    from incidentbook.charts import add_static_html

    out = []
    for cell in nb.cells:
        prop = cell.get("metadata", {}).get("incidentbook", {}).get("proposal")
        if cell.cell_type != "code" or not prop:
            continue
        if hypothesis_id and str(prop.get("hypothesis", "")).lower() != hypothesis_id.lower():
            continue
        if not cell.get("outputs") and cell.get("execution_count") is None:
            continue
        c = copy.deepcopy(cell)
        c.metadata.setdefault("incidentbook", {})["evidence_for"] = hypothesis_id
        add_static_html(c)
        out.append(c)
    return out


def _fill(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def build_postmortem(incident: Any, alerts: list[Any], events: list[Any], notebook: Any | None,
                     slo: float = DEFAULT_SLO) -> tuple[nbformat.NotebookNode, Impact, dict[str, Any] | None, int]:
    """The postmortem notebook for a closed incident (nothing written)."""
    latest, hyps = investigation_state(events)
    root = None
    for e in reversed(events):
        if e.kind == "root_cause" and e.data.get("hypothesis"):
            root = next((h for h in hyps if h["id"] == e.data["hypothesis"].get("id")), e.data["hypothesis"])
            break
    if root is None:
        confirmed = [h for h in hyps if h.get("status") == "confirmed" and h.get("role", "cause") == "cause"]
        root = confirmed[0] if confirmed else None
    services = []
    for s in [incident.service, *(a.labels.get("service", "") for a in alerts)]:
        if s and s not in services:
            services.append(s)
    bundle_window = None
    if incident.bundle:
        from incidentbook.telemetry.bundle import open_bundle

        bundle_window = open_bundle(incident.bundle).window
    start, end = impact_window(incident, alerts, bundle_window)
    imp = compute_impact(incident.bundle, start, end, services, slo=slo)
    well, hard = went_well_md(events)
    values = {
        "title": _md_escape(incident.title),
        "incident_id": incident.id,
        "facts": "\n".join([
            "| | |", "|---|---|",
            f"| Incident | {incident.id} |",
            f"| Severity | {_md_escape(incident.severity or '-')} |",
            f"| Services | {', '.join(services) or '-'} |",
            f"| Alerts | {', '.join(sorted({a.alertname for a in alerts})) or _md_escape(incident.alertname)} |",
            f"| Opened | {incident.created.strftime('%Y-%m-%d %H:%M UTC')} |",
            f"| Closed | {incident.closed_at.strftime('%Y-%m-%d %H:%M UTC') if incident.closed_at else '-'} "
            f"by {_md_escape(incident.closed_by or '-')} |",
            f"| Runbook | {incident.runbook or '-'} |"]),
        "summary": _md_escape(incident.summary) if incident.summary else "_One or two sentences: what happened, who was affected, how it was fixed._",
        "impact": impact_md(imp),
        "timeline": timeline_md(events),
        "root_cause": root_cause_md(incident, root),
        "contributing": contributing_md(hyps, root, list((latest or {}).get("notes", []))),
        "went_well": well,
        "was_hard": hard,
        "action_items": action_items_md(root, incident.closed_at),
        "not_taken": not_taken_md(latest, events),
    }
    tpl = read_notebook(template_path())
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(tpl.metadata))
    cells_added = 0
    for cell in tpl.cells:
        section = cell.get("metadata", {}).get("incidentbook", {}).get("section")
        if section == "evidence":
            cells = evidence_cells(notebook, root["id"] if root else None) if notebook is not None and root else []
            if cells:
                nb.cells.append(nbformat.v4.new_markdown_cell(
                    f"### Evidence cells for {root['id'] if root else 'the root cause'}\n\n"
                    "Copied from the incident notebook with their outputs."))
                nb.cells.extend(cells)
                cells_added = len(cells)
            continue
        c = copy.deepcopy(cell)
        c.source = _fill(c.source, values)
        if section == "impact_chart":
            if not incident.bundle or not services:
                continue
            c.source = (f"from incidentbook.postmortems import show_impact\n\n"
                        f"show_impact(\"bundle\", services={services!r}, start={imp.start!r}, end={imp.end!r})")
            fig = impact_figure(incident.bundle, services, imp.start, imp.end)
            if fig is None:
                continue
            from incidentbook.charts import figure_bundle

            c.outputs = [nbformat.v4.new_output("display_data", data=figure_bundle(fig))]
        nb.cells.append(c)
    nb.metadata["incidentbook"] = {
        "kind": "postmortem", "incident_id": incident.id, "status": "draft",
        "drafted": _iso(datetime.now(timezone.utc)),
        "root_cause": {k: root.get(k) for k in ("id", "statement", "service", "fault_kind")} if root else None,
        "impact": imp.to_dict(),
    }
    return nb, imp, root, cells_added


def postmortem_path(cfg: Any, incident_id: str) -> Path:
    """Where the draft of `incident_id` lives: beside its incident notebook."""
    return cfg.incidents_dir / incident_id / "postmortem.ipynb"


def draft_postmortem(cfg: Any, store: Any, incident_id: str, *, force: bool = False,
                     slo: float = DEFAULT_SLO) -> Draft:
    """Write `<home>/incidents/<ID>/postmortem.ipynb` for a closed incident and return it.

    An existing draft is kept (it may hold edits) unless `force`.
    """
    incident = store.get_incident(incident_id)
    if incident.status != "closed":
        raise BadInput(f"{incident.id} is still open; close it first: incidentbook incidents close {incident.id} "
                       "--summary \"…\"")
    out = postmortem_path(cfg, incident.id)
    if out.exists() and not force:
        raise BadInput(f"{out} already exists (it may hold your edits); archive it with "
                       f"`incidentbook library add {incident.id}` or pass --force to redraft")
    notebook = read_notebook(incident.notebook) if incident.notebook else None
    nb, imp, root, n = build_postmortem(incident, store.alerts(incident.id), store.timeline(incident.id),
                                        notebook, slo=slo)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    store.add_event(incident.id, "postmortem_drafted", f"postmortem drafted at {out}", data={"path": str(out)})
    return Draft(path=out, incident_id=incident.id, impact=imp, root_cause=root, evidence_cells=n)


def close_incident(store: Any, incident_id: str, actor: str, summary: str | None = None,
                   root_cause: str | None = None) -> tuple[Any, dict[str, Any] | None]:
    """Close an incident; `root_cause` may name a hypothesis (H2), resolved from the timeline.

    A named hypothesis that nobody confirmed yet is confirmed by closing with it (recorded on the
    timeline as `hypothesis_confirmed` by `actor`), then a `root_cause` event keeps the whole
    hypothesis for the postmortem. Returns the closed incident and the hypothesis (or None).
    """
    incident = store.get_incident(incident_id)
    if incident.status == "closed":
        when = incident.closed_at.strftime("%Y-%m-%d %H:%M UTC") if incident.closed_at else "earlier"
        raise BadInput(f"{incident.id} is already closed (by {incident.closed_by} at {when}); nothing to do")
    hypothesis = None
    text = root_cause
    if root_cause and looks_like_hypothesis_id(root_cause):
        hypothesis = resolve_root_cause(store.timeline(incident.id), root_cause)
        if hypothesis.get("status") != "confirmed":
            store.add_event(incident.id, "hypothesis_confirmed", f"{hypothesis['id']} confirmed at close",
                            actor=actor, data={"hypothesis": hypothesis["id"], "note": "root cause named at close",
                                               "who": actor})
            hypothesis["status"] = "confirmed"
        store.add_event(incident.id, "root_cause", f"root cause: {root_cause_text(hypothesis)}", actor=actor,
                        data={"hypothesis": hypothesis})
        text = root_cause_text(hypothesis)
    return store.close_incident(incident.id, actor=actor, summary=summary, root_cause=text), hypothesis
