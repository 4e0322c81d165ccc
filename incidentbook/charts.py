"""Plotly charts with one visual style for notebooks, runbooks and postmortems."""

from __future__ import annotations

from typing import Any


def timeseries_figure(long: Any, title: str, window: tuple[str, str] | None = None,
                      changes: Any = None, onsets: list[str] = ()) -> Any:  # type: ignore[assignment]
    """A plotly figure of a long metrics frame: window shaded, changes and onsets marked."""
    import plotly.graph_objects as go

    from incidentbook.telemetry.base import to_wide

    wide = to_wide(long)
    fig = go.Figure()
    for col in wide.columns[:30]:
        fig.add_trace(go.Scatter(x=wide.index, y=wide[col], mode="lines", name=str(col)))
    if window:
        fig.add_vrect(x0=window[0], x1=window[1], fillcolor="#f04438", opacity=0.08, line_width=0,
                      annotation_text="incident window", annotation_position="top left")
    if changes is not None and len(changes):
        for _, ch in changes.head(20).iterrows():
            fig.add_vline(x=ch["timestamp"], line_dash="dot", line_color="#6941c6")
            fig.add_annotation(x=ch["timestamp"], y=1, yref="paper", showarrow=False, textangle=-90,
                               text=f"{ch.get('kind', '')}: {ch.get('service', '')}", font={"size": 10})
    for t in onsets:
        fig.add_vline(x=t, line_color="#b42318")
    fig.update_layout(title=title, height=320, margin={"l": 40, "r": 10, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": -0.2}, template="plotly_white")
    return fig


PLOTLY_MIME = "application/vnd.plotly.v1+json"


def figure_html(fig_or_json: Any) -> str:
    """A static HTML `<div>` for a figure (plotly.js itself is loaded once by the page).

    The div id is a hash of the figure, so rendering the same figure twice gives the same HTML
    (no spurious diffs in a versioned library).
    """
    import hashlib
    import json

    import plotly.io as pio

    fig = pio.from_json(json.dumps(fig_or_json)) if isinstance(fig_or_json, dict) else fig_or_json
    spec = fig.to_json()
    div_id = "fig-" + hashlib.sha256(spec.encode("utf-8")).hexdigest()[:12]
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def figure_bundle(fig: Any) -> dict[str, Any]:
    """A display bundle for a figure: plotly JSON for JupyterLab plus static HTML for nbconvert."""
    import json

    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "chart"
    return {PLOTLY_MIME: json.loads(fig.to_json()), "text/html": figure_html(fig),
            "text/plain": f"<plotly figure: {title}>"}


def add_static_html(cell: Any) -> int:
    """Give every plotly-only output of a notebook cell a static HTML rendering; returns how many."""
    n = 0
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if PLOTLY_MIME in data and "text/html" not in data:
            data["text/html"] = figure_html(data[PLOTLY_MIME])
            n += 1
    return n
