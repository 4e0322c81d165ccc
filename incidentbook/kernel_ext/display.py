"""How results look in a notebook: the hypotheses board and time-series charts.

The board is an ipywidgets view with a plain HTML fallback in the same display bundle, so a
static viewer (nbviewer, GitHub, the stored notebook) shows the HTML. Charts are plotly, with the
incident window shaded and changes (deploys, config, flags) as vertical markers.
"""

from __future__ import annotations

import html
from typing import Any

_ROLE_COLOUR = {"cause": "#b42318", "symptom": "#b54708"}
_STATUS_MARK = {"confirmed": "✔ confirmed", "refuted": "✘ refuted", "open": "open"}


def _evidence_html(items: list[dict[str, Any]]) -> str:
    if not items:
        return "<i>none yet</i>"
    lis = "".join(
        f"<li>{html.escape(str(e.get('summary', '')))}"
        + (f" <code>{html.escape(str(e.get('query')))}</code>" if e.get("query") else "")
        + "</li>" for e in items)
    return f"<ul style='margin:2px 0'>{lis}</ul>"


def hypothesis_row_html(h: dict[str, Any]) -> str:
    """One hypothesis as an HTML block (statement, role, position, confidence, evidence)."""
    role = h.get("role", "cause")
    conf = float(h.get("confidence") or 0.0)
    return (
        f"<div style='border-left:4px solid {_ROLE_COLOUR.get(role, '#555')};padding:4px 8px;margin:6px 0'>"
        f"<b>{html.escape(h['id'])}</b> {html.escape(h.get('statement', ''))}"
        f"<div style='font-size:90%;color:#444'>{role} · {h.get('position', 'unknown')} · "
        f"{html.escape(h.get('service', ''))} · {html.escape(h.get('fault_kind', ''))} · "
        f"confidence {conf:.0%} · {_STATUS_MARK.get(h.get('status', 'open'), h.get('status'))}</div>"
        f"<div style='font-size:90%'><b>For:</b>{_evidence_html(h.get('evidence_for', []))}"
        f"<b>Against:</b>{_evidence_html(h.get('evidence_against', []))}</div></div>"
    )


def board_html(hypotheses: list[dict[str, Any]], notes: list[str] = (), errors: list[str] = ()) -> str:  # type: ignore[assignment]
    """The whole board as HTML (the fallback every viewer can show)."""
    rows = "".join(hypothesis_row_html(h) for h in hypotheses) or "<p><i>No hypotheses yet.</i></p>"
    extra = "".join(f"<p>ℹ {html.escape(n)}</p>" for n in notes)
    extra += "".join(f"<p style='color:#b42318'>⚠ query failed: {html.escape(e)}</p>" for e in errors)
    return f"<div class='incidentbook-board tex2jax_ignore mathjax_ignore'><h4 style='margin:4px 0'>Hypotheses</h4>{rows}{extra}</div>"


def board_widget(hypotheses: list[dict[str, Any]]) -> Any:
    """The board as ipywidgets: one row per hypothesis with a confidence bar and evidence accordion."""
    import ipywidgets as w

    rows = []
    for h in hypotheses:
        head = w.HTML(f"<b>{html.escape(h['id'])}</b> {html.escape(h.get('statement', ''))} "
                      f"<span style='color:{_ROLE_COLOUR.get(h.get('role', ''), '#555')}'>"
                      f"[{h.get('role')}, {h.get('position')}]</span> "
                      f"{_STATUS_MARK.get(h.get('status', 'open'), '')}")
        bar = w.FloatProgress(value=float(h.get("confidence") or 0), min=0, max=1, description="confidence",
                              layout=w.Layout(width="320px"))
        ev = w.Accordion(children=[w.HTML(_evidence_html(h.get("evidence_for", []))),
                                   w.HTML(_evidence_html(h.get("evidence_against", [])))])
        ev.set_title(0, f"evidence for ({len(h.get('evidence_for', []))})")
        ev.set_title(1, f"evidence against ({len(h.get('evidence_against', []))})")
        ev.selected_index = None
        rows.append(w.VBox([head, bar, ev], layout=w.Layout(border="1px solid #ddd", padding="4px", margin="4px 0")))
    title = w.HTML("<h4 style='margin:4px 0'>Hypotheses</h4>")
    return w.VBox([title, *(rows or [w.HTML("<i>No hypotheses yet.</i>")])], layout=w.Layout(width="100%"))


def show_board(hypotheses: list[dict[str, Any]], notes: list[str] = (), errors: list[str] = (),  # type: ignore[assignment]
               widgets: bool = True) -> None:
    """Display the board: widget plus HTML fallback in one bundle (HTML only when widgets=False)."""
    from IPython.display import display

    fallback = board_html(hypotheses, notes, errors)
    bundle: dict[str, Any] = {"text/html": fallback, "text/plain": f"{len(hypotheses)} hypotheses"}
    if widgets:
        try:
            view = board_widget(hypotheses)._repr_mimebundle_()
            bundle.update({k: v for k, v in view.items() if k != "text/plain"})
        except Exception:  # widgets unavailable (no comm): the HTML still shows the board
            pass
    display(bundle, raw=True)
