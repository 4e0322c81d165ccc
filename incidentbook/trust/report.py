"""The team review notebook of the trust ledger: acceptance rates, edited diffs, wrong hypotheses.

`write_report` saves the ledger as JSON beside the notebook, writes a notebook whose cells load
it and show each section, and executes the notebook (nbclient) so it opens with its outputs.
The `show_*` functions are what those cells call; they work in any notebook.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.errors import IncidentbookError
from incidentbook.trust.ledger import FATES, Ledger, build_ledger, today

#: Bar colours per fate (run verbatim, edited then run, ignored, refuted).
FATE_COLOURS = {"verbatim": "#12b76a", "edited": "#f79009", "ignored": "#98a2b3", "refuted": "#b42318", "pending": "#d0d5dd"}
FATE_LABELS = {"verbatim": "run verbatim", "edited": "edited, then run", "ignored": "ignored (never run)",
               "refuted": "not run, hypothesis refuted",
               "pending": "not run yet (incident open)"}


class ReportFailed(IncidentbookError):
    """The review notebook was written but could not be executed."""


def _label(investigator: str, model: str) -> str:
    return f"{investigator} ({model})" if model else investigator


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


# ---------------------------------------------------------------------------------- figures and tables

def acceptance_figure(ledger: Ledger) -> Any:
    """A plotly bar chart: proposals per investigator/model stacked by fate, acceptance rate on top."""
    import plotly.graph_objects as go

    rates = ledger.rates()
    x = [_label(r["investigator"], r["model"]) for r in rates]
    fig = go.Figure()
    for fate in FATES:
        if not any(r[fate] for r in rates):
            continue  # keep the legend to fates that happened
        fig.add_trace(go.Bar(name=FATE_LABELS[fate], x=x, y=[r[fate] for r in rates],
                             marker_color=FATE_COLOURS[fate]))
    for label, r in zip(x, rates):
        fig.add_annotation(x=label, y=r["proposals"], text=f"accepted {_pct(r['acceptance_rate'])}",
                           showarrow=False, yshift=12, font={"size": 12})
    fig.update_layout(title="Proposals by fate, per investigator and model", barmode="stack", height=360,
                      margin={"l": 40, "r": 10, "t": 50, "b": 30}, legend={"orientation": "h", "y": -0.15},
                      showlegend=True, template="plotly_white", yaxis_title="proposals")
    return fig


def rates_frame(ledger: Ledger) -> Any:
    """A pandas table of proposal fates and acceptance per investigator/model (the headline table)."""
    import pandas as pd

    return pd.DataFrame([{
        "investigator": r["investigator"], "model": r["model"] or "-", "incidents": r["incidents"],
        "proposals": r["proposals"], "run verbatim": r["verbatim"], "edited, run": r["edited"],
        "ignored": r["ignored"], "refuted": r["refuted"], "pending": r["pending"],
        "accepted": _pct(r["acceptance_rate"]), "verbatim": _pct(r["verbatim_rate"]),
        "writes run / proposed": f"{r['writes_run']} / {r['write_proposals']}"} for r in ledger.rates()])


def hypotheses_frame(ledger: Ledger) -> Any:
    """A pandas table of hypothesis verdicts per investigator/model and how often the top one was right."""
    import pandas as pd

    return pd.DataFrame([{
        "investigator": r["investigator"], "model": r["model"] or "-", "investigations": r["investigations"],
        "hypotheses": r["hypotheses"], "confirmed": r["confirmed"], "refuted": r["refuted_hypotheses"],
        "open": r["open_hypotheses"],
        "top hypothesis was the root cause": (f"{r['top_was_root_cause']} of {r['top_judged']} "
                                              f"({_pct(r['top_hit_rate'])})" if r["top_judged"] else "-")}
        for r in ledger.rates()])


def fates_frame(ledger: Ledger) -> Any:
    """A pandas table: one row per proposal (incident, id, who proposed it, kind, fate, who ran it)."""
    import pandas as pd

    return pd.DataFrame([{
        "incident": p.incident_id, "proposal": p.proposal_id, "by": _label(p.investigator, p.model),
        "kind": p.kind, "hypothesis": p.hypothesis or "-", "fate": p.fate, "ran by": p.who or "-",
        "outcome": p.outcome or "-", "what": p.title} for p in ledger.proposals])


_NO_SOURCE = "(the run source is not in the incident notebook; only its hash is known)"
_NO_EDITS = "No proposal was edited before it was run."
_DIFF_COLOURS = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}


def _edit_heading(p: Any) -> tuple[str, str]:
    return (f"{p.incident_id} {p.proposal_id}",
            f"({_label(p.investigator, p.model)}, {p.kind}, run by {p.who or 'someone'}): {p.title}")


def edits_markdown(ledger: Ledger) -> str:
    """Markdown: each edited proposal with the diff from what was proposed to what was run."""
    out = []
    for p in ledger.edited():
        name, rest = _edit_heading(p)
        out.append(f"**{name}** {html.escape(rest)}\n\n```diff\n{p.diff or _NO_SOURCE}\n```")
    return "\n\n".join(out) or f"_{_NO_EDITS}_"


def edits_html(ledger: Ledger) -> str:
    """HTML: the same as `edits_markdown`, with added and removed lines coloured."""
    out = []
    for p in ledger.edited():
        name, rest = _edit_heading(p)
        lines = []
        for line in (p.diff or _NO_SOURCE).splitlines():
            bg = "" if line.startswith(("+++", "---")) else _DIFF_COLOURS.get(line[:1], "")
            style = f' style="background:{bg}"' if bg else ""
            lines.append(f"<div{style}>{html.escape(line) or '&nbsp;'}</div>")
        out.append(f"<p><b>{html.escape(name)}</b> {html.escape(rest)}</p><pre style=\"font-family:ui-monospace,"
                   "monospace;font-size:12px;line-height:1.4;padding:6px;border:1px solid #d0d7de;border-radius:4px\">"
                   f"{''.join(lines)}</pre>")
    return "\n".join(out) or f"<p><em>{_NO_EDITS}</em></p>"


def wrong_frame(ledger: Ledger) -> Any:
    """A pandas table of wrong hypotheses: refuted ones and top hypotheses that were not the root cause."""
    import pandas as pd

    rows = []
    for h in ledger.wrong_hypotheses():
        why = []
        if h.status == "refuted":
            why.append("refuted" + (f": {h.note}" if h.note else ""))
        if h.is_top and h.is_root_cause is False:
            why.append("ranked first, not the root cause")
        rows.append({"incident": h.incident_id, "by": _label(h.investigator, h.model), "hypothesis": h.hypothesis_id,
                     "rank": h.rank, "suspected": f"{h.fault_kind} on {h.service}", "statement": h.statement,
                     "why wrong": "; ".join(why)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- cells call these

def _show_frame(frame: Any, empty: str) -> None:
    from IPython.display import Markdown, display

    if frame.empty:
        display(Markdown(empty))
    else:
        display(frame.style.hide(axis="index").set_properties(**{"text-align": "left"})
                .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}]))


def show_summary(ledger: Ledger) -> None:
    """Display the totals in one paragraph."""
    from IPython.display import Markdown, display

    t = ledger.totals()
    scope = f"since {ledger.since}" if ledger.since else "all incidents in the store"
    display(Markdown(
        f"**{_plural(t['incidents'], 'incident')}** ({scope}), **{_plural(t['proposals'], 'proposal')}**: "
        f"{t['verbatim']} run verbatim, {t['edited']} edited then run, {t['ignored']} ignored, "
        f"{t['refuted']} left because their hypothesis was refuted, {t['pending']} still pending in open incidents. "
        + (f"Acceptance rate: **{_pct(t['acceptance_rate'])}**." if t["acceptance_rate"] is not None
         else "No proposal has been run or left in a closed incident yet, so there is no acceptance rate.")
        + f" Ledger built {ledger.generated}."))


def show_rates(ledger: Ledger) -> None:
    """Display the per investigator/model table and the acceptance chart."""
    from IPython.display import display

    from incidentbook.charts import figure_bundle

    _show_frame(rates_frame(ledger), "_No investigations or proposals in this period._")
    if ledger.proposals:
        display(figure_bundle(acceptance_figure(ledger)), raw=True)
    if ledger.investigations:
        _show_frame(hypotheses_frame(ledger), "")


def show_edits(ledger: Ledger) -> None:
    """Display the edited proposals with their diffs."""
    from IPython.display import display

    display({"text/html": edits_html(ledger), "text/markdown": edits_markdown(ledger)}, raw=True)


def show_wrong_hypotheses(ledger: Ledger) -> None:
    """Display the wrong hypotheses table."""
    _show_frame(wrong_frame(ledger), "_No hypothesis was refuted, and every top hypothesis with a known "
                                     "root cause was right._")


def show_fates(ledger: Ledger) -> None:
    """Display every proposal and its fate."""
    _show_frame(fates_frame(ledger), "_No proposals in this period._")


# ---------------------------------------------------------------------------------- the notebook

_INTRO = """# Trust review: what happened to the assistant's suggestions

For the regular team review. A proposal does nothing until a person runs it, so what people did
with each proposal is the evidence for how far to trust an investigator and a model version:

- **run verbatim**: accepted as is; **edited, then run**: useful but not right (diffs below);
- **ignored**: never run; **refuted**: never run because its hypothesis was refuted first;
- **pending**: not run yet in an incident that is still open (not counted in acceptance).

Use it to decide autonomy (`policy.toml`): an investigator whose write proposals are run verbatim,
incident after incident, is a candidate for `cooldown` in staging; one whose top hypothesis is
often wrong is not. Re-run with `incidentbook trust report`; this notebook reads `{ledger}`."""


def build_report(ledger_file: str) -> nbformat.NotebookNode:
    """The review notebook (not executed) reading the ledger JSON at `ledger_file` (relative to the notebook)."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    setup = code(f"from incidentbook.trust import Ledger, report\n\nledger = Ledger.load({ledger_file!r})\n"
                 "report.show_summary(ledger)")
    setup.metadata["tags"] = ["hide-input"]
    cells = [
        md(_INTRO.format(ledger=ledger_file)), setup,
        md("## Acceptance per investigator and model\n\nAccepted = run (verbatim or edited) over run + ignored "
           "proposals; refuted and pending ones are left out. *Top hypothesis was the root cause* counts investigations of incidents whose root cause "
           "was confirmed."),
        code("report.show_rates(ledger)"),
        md("## Edited proposals\n\nWhat people changed before running a proposal: the gap between the suggestion "
           "and what the situation needed."),
        code("report.show_edits(ledger)"),
        md("## Wrong hypotheses\n\nRefuted hypotheses, and top-ranked hypotheses that were not the confirmed root "
           "cause."),
        code("report.show_wrong_hypotheses(ledger)"),
        md("## Every proposal"),
        code("report.show_fates(ledger)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["incidentbook"] = {"kind": "trust_report", "title": "Trust review", "ledger": ledger_file}
    return nb


def execute_report(nb: nbformat.NotebookNode, cwd: Path, kernel_name: str = "python3",
                   timeout_s: float = 120) -> nbformat.NotebookNode:
    """Run the review notebook in `cwd` with nbclient; ReportFailed names the cell that failed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=timeout_s, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    try:
        client.execute()
    except CellExecutionError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # tracebacks carry terminal colours
        first = text.splitlines()[-1][:200] if text else type(e).__name__
        raise ReportFailed(f"the trust report notebook failed while running: {first}; "
                           "open it to see the cell, or pass --no-execute") from None
    except Exception as e:  # kernel missing or dead: the unexecuted notebook is still useful
        raise ReportFailed(f"could not run the trust report notebook ({type(e).__name__}: {e}); "
                           f"install a {kernel_name!r} kernel or pass --no-execute") from None
    return nb


def report_path(cfg: Any, out: str | Path | None = None) -> Path:
    """Where the report goes: `out`, else `<home>/trust/report-<date>.ipynb`."""
    if out:
        p = Path(out)
        if p.suffix != ".ipynb":
            from incidentbook.errors import BadInput

            raise BadInput(f"--out {out}: the report is a notebook; give a path ending in .ipynb")
        return p
    return Path(cfg.home) / "trust" / f"report-{today()}.ipynb"


def build_trust_ledger(cfg: Any, store: Any, since: str | None = None, include_library: bool = False) -> Ledger:
    """The ledger of the configured workspace: its store, incident notebooks and (optionally) library."""
    library = None
    if include_library:
        from incidentbook.postmortems import Library

        library = Library.from_config(cfg)
        if not library.path.is_dir():
            library = None
    return build_ledger(store, since=since, incidents_dir=cfg.incidents_dir, library=library)


def write_report(cfg: Any, store: Any, *, out: str | Path | None = None, since: str | None = None,
                 include_library: bool = False, execute: bool = True) -> tuple[Path, Ledger]:
    """Build the ledger, write `<report>.json` and the review notebook, run it; returns (path, ledger)."""
    ledger = build_trust_ledger(cfg, store, since=since, include_library=include_library)
    path = report_path(cfg, out).resolve()
    data = path.with_suffix(".json")
    ledger.save(data)
    nb = build_report(data.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if execute:
        try:
            nb = execute_report(nb, path.parent, kernel_name=cfg.runner.kernel_name)
        finally:
            nbformat.write(nb, path)
    else:
        nbformat.write(nb, path)
    return path, ledger
