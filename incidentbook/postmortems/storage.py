"""A library postmortem as a Confluence page in storage format (XHTML), with its charts as PNGs.

The source is the library entry (`postmortem.ipynb` and `meta.json`), which is already redacted;
nothing here reads the incident notebook or the store. Markdown cells go through mistune with raw
HTML escaped (a postmortem's text is data: `<ac:structured-macro>` typed into a summary shows as
text, it never becomes a macro), code and log output go into CDATA code blocks, the action items
table becomes a Confluence task list, and each chart becomes an attached PNG that the page shows
with `<ac:image>`. The result is checked to be well-formed XML before it leaves.
"""

from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

#: Characters XML 1.0 cannot carry at all (NUL, most C0 controls, lone surrogates, U+FFFE/FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DETAILS = re.compile(r"</?details>|<summary>(.*?)</summary>", re.S)
PLOTLY_MIME = "application/vnd.plotly.v1+json"
LABEL_CHARS = re.compile(r"[^a-z0-9_.-]+")


def clean(text: Any) -> str:
    """Text safe to put in XML: characters XML cannot hold become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


def esc(text: Any) -> str:
    """Escape text for an XHTML element or attribute."""
    return html.escape(clean(text), quote=True)


def cdata(text: Any) -> str:
    """A CDATA section holding `text` verbatim (a `]]>` inside is split across two sections)."""
    return "<![CDATA[" + clean(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def code_block(text: str, language: str = "") -> str:
    """Confluence's code macro around `text`."""
    lang = f'<ac:parameter ac:name="language">{esc(language)}</ac:parameter>' if language else ""
    return (f'<ac:structured-macro ac:name="code">{lang}'
            f"<ac:plain-text-body>{cdata(text)}</ac:plain-text-body></ac:structured-macro>")


def label_of(value: str) -> str:
    """A Confluence label: lower case, no spaces (they split labels), at most 255 characters."""
    return LABEL_CHARS.sub("-", clean(value).lower()).strip("-")[:255]


_markdown: Any = None


def markdown_to_xhtml(text: str) -> str:
    """Markdown to XHTML with raw HTML escaped (the template's <details> becomes a plain paragraph)."""
    global _markdown
    if _markdown is None:
        import mistune

        _markdown = mistune.create_markdown(escape=True, hard_wrap=False,
                                            plugins=["table", "strikethrough"])
    # The draft writes text HTML-escaped for Jupyter's renderer; unescape it once so mistune's own
    # escaping is the only one (raw HTML in it, escaped or not, still ends up as visible text).
    text = _DETAILS.sub(lambda m: f"\n\n**{m.group(1)}**\n\n" if m.group(1) else "\n", clean(text))
    text = html.unescape(text)
    out = str(_markdown(text))
    # mistune writes HTML void elements the XHTML way already; make sure of <br> and <hr> anyway.
    return re.sub(r"<(br|hr)\s*>", r"<\1 />", out)


def well_formed(body: str) -> bool:
    """Whether `body` parses as XML with Confluence's `ac:`/`ri:` namespaces declared."""
    doc = ('<!DOCTYPE root [<!ENTITY nbsp "&#160;">]>'
           '<root xmlns:ac="http://atlassian.com/content" xmlns:ri="http://atlassian.com/resource/identifier">'
           f"{body}</root>")
    try:
        ET.fromstring(doc)
    except ET.ParseError:
        return False
    return True


@dataclass
class Attachment:
    """A file the page shows (a chart as PNG)."""

    name: str
    data: bytes
    content_type: str = "image/png"


@dataclass
class Page:
    """What is published: the title, the storage-format body, labels and attachments."""

    title: str
    body: str
    labels: list[str]
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cells_markdown(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def action_items(text: str) -> list[tuple[str, bool]]:
    """Rows of the action items markdown table as (text, done); other lines are ignored."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]
        if not cells or set(cells[0]) <= set("-: ") or cells[0].lower() == "action":
            continue
        action, owner, due, status = (cells + ["", "", "", ""])[:4]
        action = re.sub(r"^[_*]+|[_*]+$", "", action)  # the draft's placeholders are in italics
        done = status.strip("_* ").lower() in ("done", "closed", "complete", "completed", "fixed")
        extra = ", ".join(x for x in (f"owner: {owner.strip('_')}" if owner else "",
                                      f"due {due}" if due else "") if x)
        items.append((action.replace("\\|", "|") + (f" ({extra})" if extra else ""), done))
    return items


def task_list(items: list[tuple[str, bool]]) -> str:
    """Confluence's task list macro (each item a checkbox)."""
    tasks = "".join(f"<ac:task><ac:task-id>{i}</ac:task-id><ac:task-status>{'complete' if done else 'incomplete'}"
                    f"</ac:task-status><ac:task-body>{esc(html.unescape(text))}</ac:task-body></ac:task>"
                    for i, (text, done) in enumerate(items, 1))
    return f"<ac:task-list>{tasks}</ac:task-list>"


_PNG_CACHE: dict[str, bytes | None] = {}


def chart_png(figure: dict[str, Any]) -> bytes | None:
    """A plotly figure (its JSON) as PNG with kaleido; None when kaleido or a browser is missing.

    Kaleido drives a headless Chrome/Chromium (the system one is found; nothing is downloaded),
    which takes seconds to start, so the same figure is drawn once per process.
    """
    import hashlib
    import json

    key = hashlib.sha256(json.dumps(figure, sort_keys=True, default=str).encode()).hexdigest()
    if key not in _PNG_CACHE:
        try:
            import plotly.io as pio

            fig = pio.from_json(json.dumps(figure))
            _PNG_CACHE[key] = bytes(fig.to_image(format="png", width=1000, height=420))
        except Exception:  # noqa: BLE001 - no kaleido, no Chrome, or a figure it cannot draw: fall back
            _PNG_CACHE[key] = None
    return _PNG_CACHE[key]


def _output_text(out: dict[str, Any]) -> str:
    if out.get("output_type") == "stream":
        t = out.get("text", "")
        return "".join(t) if isinstance(t, list) else str(t)
    if out.get("output_type") == "error":
        return f"{out.get('ename', '')}: {out.get('evalue', '')}"
    data = out.get("data", {})
    t = data.get("text/plain", "")
    return "".join(t) if isinstance(t, list) else str(t)


def _image(name: str) -> str:
    return f'<ac:image ac:width="900"><ri:attachment ri:filename="{esc(name)}" /></ac:image>'


def build_page(meta: dict[str, Any], notebook: Any, library_ref: str) -> Page:
    """The Confluence page of one library entry (`meta` and `notebook` already redacted).

    `library_ref` says where the entry lives (its path in the library, or a URL) for the link back.
    """
    iid = str(meta.get("id", ""))
    page = Page(title=clean(f"{iid}: {meta.get('title') or 'Postmortem'}")[:255], body="", labels=[])
    rc = meta.get("root_cause") or {}
    kind = "" if rc.get("kind") in (None, "", "unknown") else str(rc["kind"])
    for value in ("postmortem", *meta.get("services", [])[:5], kind,
                  f"severity-{meta['severity']}" if meta.get("severity") else ""):
        label = label_of(value)
        if label and label not in page.labels:
            page.labels.append(label)
    parts = [f"<p><em>Postmortem of {esc(iid)}, published from the incidentbook library entry "
             f"<code>{esc(library_ref)}</code> (<code>incidentbook library show {esc(iid)}</code>). "
             "Secrets and personal data were redacted before publishing; edit the library entry and "
             "publish again rather than editing here.</em></p>"]
    charts = 0
    for cell in notebook.cells:
        section = cell.get("metadata", {}).get("incidentbook", {}).get("section")
        if cell.get("cell_type") == "markdown":
            text = _cells_markdown(cell)
            if section == "action_items":
                items = action_items(text)
                intro = "\n".join(line for line in text.splitlines() if not line.strip().startswith("|"))
                parts.append(markdown_to_xhtml(intro))
                if items:
                    parts.append(task_list(items))
                continue
            parts.append(markdown_to_xhtml(text))
            continue
        if cell.get("cell_type") != "code":
            continue
        if section != "impact_chart":
            src = _cells_markdown(cell)
            if src.strip():
                parts.append(code_block(src, "python"))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            png: bytes | None = None
            if PLOTLY_MIME in data:
                png = chart_png(data[PLOTLY_MIME])
                if png is None and "image/png" not in data:
                    page.notes.append("a chart could not be drawn as PNG (kaleido needs Chrome or Chromium); "
                                      "the page links to the library's HTML instead")
                    parts.append(f"<p><em>Chart: see the library's postmortem.html for {esc(iid)}.</em></p>")
                    continue
            if png is None and "image/png" in data:
                raw = data["image/png"]
                try:
                    png = base64.b64decode("".join(raw) if isinstance(raw, list) else str(raw))
                except ValueError:
                    png = None
            if png is not None:
                charts += 1
                name = f"chart-{charts}.png"
                page.attachments.append(Attachment(name, png))
                parts.append(_image(name))
                continue
            text = _output_text(out)
            if text.strip() and section != "impact_chart":
                parts.append(code_block(text[:20_000]))
    body = "".join(parts)
    if not well_formed(body):  # should not happen; if it does, the page still says everything, as text
        page.notes.append("the page body was not well-formed XHTML; published as plain text instead")
        body = parts[0] + code_block("\n\n".join(_cells_markdown(c) for c in notebook.cells))
    page.body = body
    return page
