"""Static HTML: each postmortem through nbconvert, and an index page of the library.

Charts are plotly figures with a static HTML rendering (see `charts.figure_bundle`); the pages
load plotly.js from the library's `_static/` (written from the installed plotly package, so it
works offline and is never committed).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

STATIC_DIR = "_static"
PLOTLY_JS = "plotly.min.js"


def ensure_static(library: Path) -> Path:
    """Write `<library>/_static/plotly.min.js` from the installed plotly, if it is not there."""
    target = library / STATIC_DIR / PLOTLY_JS
    if not target.exists():
        from plotly.offline import get_plotlyjs

        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(get_plotlyjs(), encoding="utf-8")
    return target


def render_html(nb: Any, out: Path, plotly_src: str) -> Path:
    """Render a notebook to `out` with nbconvert (inputs tagged hide-input hidden)."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.remove_input_tags = {"hide-input"}
    c.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=c, template_name="lab")
    exporter.register_preprocessor(TagRemovePreprocessor(config=c), enabled=True)
    title = str(nb.metadata.get("incidentbook", {}).get("title") or "Postmortem")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    script = f'<script src="{html.escape(plotly_src)}" charset="utf-8"></script>'
    body = body.replace("</head>", script + "\n</head>", 1)
    out.write_text(body, encoding="utf-8")
    return out


def render_markdown(nb: Any, out: Path) -> Path:
    """A plain-text view of the notebook (no outputs) so that git diffs of a postmortem read well."""
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    exporter.exclude_output = True
    body, _ = exporter.from_notebook_node(nb)
    out.write_text(body, encoding="utf-8")
    return out


_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1{font-size:1.6em} table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:6px 10px;
border-bottom:1px solid #d0d7de;vertical-align:top} th{background:#f6f8fa} .muted{color:#656d76}
.kind{font-family:ui-monospace,monospace;font-size:.9em;background:#eef1f4;padding:1px 5px;border-radius:4px}
"""


def write_index(library: Path, metas: list[tuple[dict[str, Any], Path]]) -> Path:
    """`<library>/index.html`: every postmortem, newest first, with what it was about."""
    rows = []
    for meta, entry in sorted(metas, key=lambda x: str(x[0].get("closed") or ""), reverse=True):
        rc = meta.get("root_cause") or {}
        link = html.escape(str(entry.relative_to(library) / "postmortem.html"))
        minutes = round((meta.get("duration_s") or 0) / 60)
        rows.append(
            f"<tr><td>{html.escape(str(meta.get('closed', ''))[:10])}</td>"
            f"<td><a href=\"{link}\">{html.escape(meta['id'])}</a><br>{html.escape(meta.get('title', ''))}</td>"
            f"<td>{html.escape(meta.get('severity') or '-')}</td>"
            f"<td>{html.escape(', '.join(meta.get('services', [])))}</td>"
            f"<td><span class=kind>{html.escape(rc.get('kind') or 'unknown')}</span> "
            f"{html.escape(rc.get('statement') or '')}</td><td>{minutes} min</td></tr>")
    body = ("<!doctype html><html><head><meta charset=utf-8><title>Postmortem library</title>"
            f"<style>{_STYLE}</style></head><body><h1>Postmortem library</h1>"
            f"<p class=muted>{len(rows)} postmortems. Search them with "
            "<code>incidentbook library search QUERY</code>.</p>"
            "<table><tr><th>Closed</th><th>Incident</th><th>Severity</th><th>Services</th>"
            "<th>Root cause</th><th>Duration</th></tr>" + "".join(rows) + "</table></body></html>\n")
    out = library / "index.html"
    out.write_text(body, encoding="utf-8")
    return out
