"""The eval scorecard: one self-contained HTML page (plotly.js inlined, works offline as a CI artifact).

Charts: the headline metrics side by side, the rank of the right cause per case (a miss drawn at
MISS_RANK), and the seconds per case; then the per-case table. Works for one report or a Comparison.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from incidentbook.evals.runner import MISS_RANK, EvalReport

_SHOWN = ("ac1", "ac3", "remediation_rate")


def _reports(result: Any) -> list[tuple[str, EvalReport]]:
    if isinstance(result, EvalReport):
        return [(f"{result.investigator}{f' ({result.model})' if result.model else ''}", result)]
    return [(result.label("a"), result.a), (result.label("b"), result.b)]


def scorecard_figure(result: Any) -> Any:
    """A plotly figure: metrics, rank per case, seconds per case (one trace per investigator)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.12,
                        subplot_titles=("Accuracy and remediation match (higher is better)",
                                        f"Rank of the right cause per case (lower is better; {MISS_RANK} = missed)",
                                        "Seconds per case"))
    for label, rep in _reports(result):
        d = rep.to_dict()
        fig.add_trace(go.Bar(name=label, x=list(_SHOWN), y=[d.get(k) or 0 for k in _SHOWN], legendgroup=label,
                             text=[f"{(d.get(k) or 0):.2f}" for k in _SHOWN], textposition="outside"), row=1, col=1)
        cases = [c.case for c in rep.cases]
        fig.add_trace(go.Bar(name=label, x=cases, y=[c.rank or MISS_RANK for c in rep.cases], legendgroup=label,
                             showlegend=False, hovertext=[c.ranked[0] if c.ranked else "(no cause)" for c in rep.cases]),
                      row=2, col=1)
        fig.add_trace(go.Bar(name=label, x=cases, y=[c.seconds for c in rep.cases], legendgroup=label,
                             showlegend=False), row=3, col=1)
    fig.update_yaxes(range=[0, 1.15], row=1, col=1)
    fig.update_layout(barmode="group", height=1000, template="plotly_white", title="incidentbook eval scorecard",
                      legend={"orientation": "h", "y": 1.06})
    return fig


def _table(result: Any) -> str:
    reps = _reports(result)
    head = "".join(f"<th>{html.escape(label)} rank</th><th>top hypothesis</th><th>remediation</th><th>unsafe</th>"
                   for label, _ in reps)
    rows = []
    for i, c in enumerate(reps[0][1].cases):
        cells = ""
        for _, rep in reps:
            r = rep.cases[i] if i < len(rep.cases) else None
            if r is None:
                cells += "<td></td>" * 4
                continue
            rem = "-" if r.remediation_match is None else ("yes" if r.remediation_match else "no")
            cls = ' class="bad"' if r.unsafe else ""
            cells += (f"<td>{r.rank or 'miss'}</td><td>{html.escape(r.ranked[0] if r.ranked else '(no cause)')}</td>"
                      f"<td>{rem}</td><td{cls}>{len(r.unsafe)}</td>")
        rows.append(f"<tr><td>{html.escape(c.case)}</td><td>{c.kind}</td><td>{html.escape(c.expected)}</td>{cells}</tr>")
    return (f"<table><tr><th>case</th><th>kind</th><th>expected</th>{head}</tr>{''.join(rows)}</table>")


def write_scorecard(result: Any, out: str | Path) -> Path:
    """Write the scorecard of an EvalReport or Comparison to `out` (HTML)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import plotly.graph_objects as go

    from incidentbook.redact import process_redactor

    # Case names and hypotheses are data: redacted before they are drawn (plotly.js itself is not).
    redactor = process_redactor()
    fig = go.Figure(redactor.redact_obj(scorecard_figure(result).to_plotly_json()))
    fig_html = fig.to_html(full_html=False, include_plotlyjs=True, div_id="scorecard")
    totals = "".join(
        f"<li><b>{html.escape(label)}</b>: AC@1 {rep.ac1:.3f} · AC@3 {rep.ac3:.3f} · mean rank {rep.mean_rank} · "
        f"remediation {'-' if rep.remediation_rate is None else f'{rep.remediation_rate:.3f}'} · "
        f"unsafe proposals {rep.unsafe_total} · {len(rep.cases)} cases"
        + ("" if rep.cost_usd is None else f" · ${rep.cost_usd:.4f}") + "</li>"
        for label, rep in _reports(result))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>incidentbook eval scorecard</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}.bad{{background:#fdd;font-weight:bold}}</style>
</head><body><h1>Eval scorecard</h1><ul>{redactor.redact(totals)}</ul>{fig_html}<h2>Cases</h2>{redactor.redact(_table(result))}</body></html>
"""
    out.write_text(page, encoding="utf-8")
    return out
