"""Proposed cells: recording them in a headless run and turning them into notebook cells.

A proposal does nothing until a human runs it. In a live kernel the extension puts it below the
current cell with `set_next_input`; in a headless (papermill) run it is recorded as a display
output with the mime type `application/vnd.incidentbook.proposal+json`, and the runner calls
`materialize_proposals` afterwards to turn every recorded proposal into an un-executed code
cell right after the cell that proposed it, with a markdown rationale cell above it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

#: Set (to "1") in a kernel's environment when no human is at it, e.g. a papermill runbook run.
HEADLESS_ENV = "INCIDENTBOOK_HEADLESS"

PROPOSAL_MIME = "application/vnd.incidentbook.proposal+json"
#: Metadata keys of `metadata.incidentbook.proposal` (DESIGN.md contract).
PROPOSAL_KEYS = ("id", "rationale", "hypothesis", "kind", "author", "created")

_HEADER_RE = re.compile(r"^#\s*proposal\s+([A-Za-z0-9][\w.-]*)\s*(?::|$)", re.IGNORECASE)


def proposal_header(proposal_id: str, title: str) -> str:
    """The first-line comment naming a proposal, e.g. `# proposal P3: check cache hit ratio`."""
    title = " ".join(title.split())[:80]
    return f"# proposal {proposal_id}: {title}" if title else f"# proposal {proposal_id}"


def proposal_id_of(source: str) -> str | None:
    """The proposal id a cell's first line names, or None when it names none."""
    first = source.lstrip("\n").split("\n", 1)[0].strip()
    m = _HEADER_RE.match(first)
    return m.group(1) if m else None


def proposal_source(p: Mapping[str, Any]) -> str:
    """The full cell text of a proposal: its code, led by the comment naming it."""
    code = str(p.get("code", "")).strip("\n")
    if proposal_id_of(code) == p["id"]:
        return code
    title = p.get("title") or str(p.get("rationale", "")).split(". ")[0]
    return proposal_header(str(p["id"]), str(title)) + "\n" + code


def source_hash(source: str) -> str:
    """A hash of a cell's code that ignores trailing whitespace (to tell verbatim from edited)."""
    norm = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def proposal_metadata(p: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata.incidentbook.proposal` of a proposal cell."""
    meta = {k: p.get(k) for k in PROPOSAL_KEYS}
    meta["kind"] = meta["kind"] or "read"
    meta["author"] = meta["author"] or "incidentbook"
    return meta


def proposal_bundle(p: Mapping[str, Any]) -> dict[str, Any]:
    """The display bundle recording a proposal headlessly (plus text for anyone reading it)."""
    payload = dict(p)
    payload["source"] = proposal_source(p)
    payload["source_hash"] = source_hash(payload["source"])
    kind = "write action" if p.get("kind") == "write" else "next step"
    text = f"Proposed {kind} {p['id']}: {p.get('rationale', '')}"
    return {
        PROPOSAL_MIME: payload,
        "text/plain": text,
        "text/markdown": f"**Proposed {kind} {p['id']}** (a cell below, not run): {p.get('rationale', '')}",
    }


def _cell_proposal_id(cell: Any) -> str | None:
    meta = cell.get("metadata", {}).get("incidentbook", {})
    prop = meta.get("proposal") if isinstance(meta, dict) else None
    return str(prop["id"]) if isinstance(prop, dict) and "id" in prop else None


def materialize_proposals(nb: Any) -> int:
    """Insert every recorded proposal as an un-executed code cell after the cell that proposed it.

    Each gets a markdown rationale cell above it and `metadata.incidentbook.proposal`. A proposal
    whose id already has a cell is skipped, so calling this twice adds nothing. Returns the
    number of proposal cells added. `nb` is an `nbformat.NotebookNode` (modified in place).
    """
    import nbformat

    existing = {pid for c in nb.cells if (pid := _cell_proposal_id(c))}
    out: list[Any] = []
    added = 0
    for cell in nb.cells:
        out.append(cell)
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
            payload = data.get(PROPOSAL_MIME)
            if not isinstance(payload, dict) or "id" not in payload:
                continue
            pid = str(payload["id"])
            if pid in existing:
                continue
            existing.add(pid)
            meta = proposal_metadata(payload)
            kind = "Write action (needs approval)" if meta["kind"] == "write" else "Proposed next step"
            why = payload.get("rationale", "")
            hyp = f" Tests hypothesis {payload['hypothesis']}." if payload.get("hypothesis") else ""
            md = nbformat.v4.new_markdown_cell(
                f"**{kind} {pid}** by {meta['author']}: {why}{hyp}\n\n"
                "Running the cell below is the approval; edit it first if it is not quite right."
            )
            md.metadata["incidentbook"] = {"proposal_rationale": pid}
            code = nbformat.v4.new_code_cell(payload.get("source") or proposal_source(payload))
            code.metadata["incidentbook"] = {"proposal": meta}
            code.metadata["tags"] = ["incidentbook-proposal"]
            out.extend([md, code])
            added += 1
    nb.cells = out
    return added
