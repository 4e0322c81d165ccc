"""Proposed cells: recording them in a headless run and turning them into notebook cells.

A proposal does nothing until a human runs it. In a live kernel the extension puts it below the
current cell with `set_next_input`; in a headless (papermill) run it is recorded as a display
output with the mime type `application/vnd.incidentbook.proposal+json`, and the runner calls
`materialize_proposals` afterwards to turn every recorded proposal into an un-executed code
cell right after the cell that proposed it, with a markdown rationale cell above it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import string
from collections.abc import Mapping
from typing import Any

from incidentbook.errors import BadInput

#: Set (to "1") in a kernel's environment when no human is at it, e.g. a papermill runbook run.
HEADLESS_ENV = "INCIDENTBOOK_HEADLESS"

PROPOSAL_MIME = "application/vnd.incidentbook.proposal+json"
#: Metadata keys of `metadata.incidentbook.proposal` (DESIGN.md contract).
PROPOSAL_KEYS = ("id", "rationale", "hypothesis", "kind", "author", "created")

_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$", re.ASCII)
_HEADER_RE = re.compile(r"^#\s*proposal\s+([A-Za-z0-9][\w.-]*)\s*(?::|$)", re.IGNORECASE)


def _one_line(text: str) -> str:
    """`text` with every line break and control character folded into single spaces."""
    text = "".join(" " if (ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000) else c
                   for c in str(text))
    return " ".join(text.split())


def proposal_header(proposal_id: str, title: str) -> str:
    """The first-line comment naming a proposal, e.g. `# proposal P3: check cache hit ratio`."""
    if not _ID_RE.match(str(proposal_id)):
        raise BadInput(f"proposal id {proposal_id!r} is not a plain id; use letters, digits, '.', '_' or '-' (e.g. P3)")
    title = _one_line(title)[:80]
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


# -- building proposal code from data -------------------------------------------------------------
# Proposal code is built, never formatted: Python values go in as `ast.Constant` nodes (what
# `repr()` would write), magic lines take only values that cannot end the line, open a quoted
# string, or reach IPython's `{…}`/`$…` expansion of line magics.

_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", re.ASCII)
_MAGIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)
#: Characters a value interpolated into a magic line may not hold (line breaks, quotes, IPython
#: expansion, PromQL/LogQL escapes), besides every control character.
_MAGIC_UNSAFE = set('"\'`\\{}$')


def _constant(value: Any, field: str) -> ast.expr:
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and len(value) > 4096:
            raise BadInput(f"{field} is {len(value)} characters long; a proposal takes at most 4096")
        return ast.Constant(value)
    if isinstance(value, (list, tuple)):
        return ast.List([_constant(v, field) for v in value], ast.Load())
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return ast.Dict([ast.Constant(k) for k in value], [_constant(v, field) for v in value.values()])
    raise BadInput(f"{field} is a {type(value).__name__}; proposals take strings, numbers, lists and dicts")


def python_call(func: str, *args: Any, **kwargs: Any) -> str:
    """The source of one call `func(args…, key=value…)`, every value a literal (repr-quoted).

    `func` is a dotted name such as `ib.act.rollout_undo`. A label value holding quotes, a newline
    or `" + __import__("os")... + "` stays inside its string literal.
    """
    if not _DOTTED_RE.match(func):
        raise BadInput(f"function name {func!r} is not a dotted Python name (e.g. ib.act.restart)")
    parts = func.split(".")
    node: ast.expr = ast.Name(parts[0], ast.Load())
    for attr in parts[1:]:
        node = ast.Attribute(node, attr, ast.Load())
    for k in kwargs:
        if not k.isidentifier():
            raise BadInput(f"keyword {k!r} is not a Python identifier")
    call = ast.Call(node, [_constant(a, f"argument {i + 1} of {func}") for i, a in enumerate(args)],
                    [ast.keyword(k, _constant(v, f"{k}= of {func}")) for k, v in kwargs.items() if v is not None])
    return ast.unparse(ast.fix_missing_locations(call))


def safe_label(value: Any, field: str) -> str:
    """`value` as text fit for a magic line, or BadInput naming `field` and what to do."""
    text = str(value)
    bad = sorted({c for c in text if c in _MAGIC_UNSAFE or ord(c) < 32 or 0x7F <= ord(c) < 0xA0
                  or 0xD800 <= ord(c) < 0xE000 or c in "\u2028\u2029\u0085"})
    if bad or not text or len(text) > 256:
        why = f"holds {''.join(bad)!r}" if bad else ("is empty" if not text else f"is {len(text)} characters long")
        raise BadInput(f"{field} {text[:60]!r} {why}; it cannot go into a proposed query. Query it by hand if it "
                       "is real, or fix the alert's labels")
    return text


def magic_line(magic: str, template: str, **values: Any) -> str:
    """One line-magic call, e.g. `magic_line("promql", 'rate(x{{service={service}}}[5m])', service=s)`.

    `template` uses `str.format` fields; each value is checked with `safe_label` and inserted as a
    double-quoted string (the PromQL/LogQL label-value syntax). Literal braces are doubled.
    """
    if not _MAGIC_RE.match(magic):
        raise BadInput(f"magic name {magic!r} is not a plain name (e.g. promql)")
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    missing = sorted(names - set(values))
    if missing:
        raise BadInput(f"magic_line template needs values for {missing}")
    quoted = {k: json.dumps(safe_label(v, k)) for k, v in values.items()}
    line = template.format(**quoted)
    if any(c in line for c in "\r\n\u2028\u2029\x00"):
        raise BadInput("a magic line may not hold a line break; build one line per proposal")
    return f"%{magic} {line}"


def comment_line(text: str) -> str:
    """`# text` on one line, whatever `text` holds (line breaks and control characters folded)."""
    return "# " + _one_line(text)


# -- classifying proposal code ---------------------------------------------------------------------
#: Line magics that only read telemetry or note things on the incident's own timeline. Any other
#: magic (`%approve`, `%close`, `!shell`, a magic a plugin added) makes the cell a write.
READ_MAGICS = frozenset({"promql", "logql", "k8s", "changes", "sources", "timeline", "hypotheses", "investigate",
                         "note", "confirm", "refute"})
#: Modules a read may import; any other import makes the cell a write.
READ_IMPORTS = frozenset({"math", "statistics", "json", "re", "datetime", "collections", "itertools",
                          "pandas", "numpy", "functools", "operator", "textwrap"})
#: Names whose mere use makes a cell a write: code loading, process, file and network access.
_WRITE_NAMES = frozenset({"__import__", "eval", "exec", "compile", "getattr", "setattr", "delattr", "globals",
                          "locals", "vars", "breakpoint", "input", "os", "sys", "subprocess", "socket",
                          "shutil", "pathlib", "Path", "kubernetes", "ctypes", "importlib", "builtins",
                          "actions", "incidentbook", "get_ipython", "__builtins__", "pty", "signal",
                          "multiprocessing", "threading", "asyncio", "urllib", "requests", "httpx"})
_READ_MODES = frozenset({"r", "rb", "rt", "tr", "br"})
#: `ib.<attr>` a read may use.
_READ_IB = frozenset({"investigate"})


def _ipython_to_python(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython is a dependency
        return source
    return TransformerManager().transform_cell(source)


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def write_reasons(source: str) -> list[str]:
    """Why a cell is not a read (empty list: it only reads). Decided on the AST, failing closed."""
    try:
        tree = ast.parse(_ipython_to_python(source))
    except (SyntaxError, ValueError) as e:
        return [f"not valid Python ({type(e).__name__})"]
    reasons: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            for m in mods:
                if m.split(".")[0] not in READ_IMPORTS:
                    reasons.append(f"imports {m}")
        elif isinstance(node, ast.Name) and node.id in _WRITE_NAMES and node.id != "get_ipython":
            reasons.append(f"uses {node.id}")
        elif isinstance(node, ast.Attribute):
            if node.attr == "act" or node.attr.startswith("__"):
                reasons.append(f"uses .{node.attr}")
            elif isinstance(node.value, ast.Name) and node.value.id == "ib" and node.attr not in _READ_IB:
                reasons.append(f"uses ib.{node.attr}")
        elif isinstance(node, ast.Call):
            reasons.extend(_call_reasons(node))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            reasons.append("rebinds names outside the cell")
    # `ib` on its own (aliased, passed around) reaches everything `ib.act` does.
    attr_bases = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "ib" and id(node) not in attr_bases:
            reasons.append("uses ib itself (an alias reaches ib.act)")
    return list(dict.fromkeys(reasons))


def _call_reasons(node: ast.Call) -> list[str]:
    f = node.func
    if isinstance(f, ast.Name) and f.id == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        if mode is not None and _const_str(mode) not in _READ_MODES:
            return ["opens a file for writing"]
        return []
    if isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes", "unlink", "rmdir", "system",
                                                   "popen", "remove", "rename", "replace", "chmod", "kill"):
        return [f"calls .{f.attr}()"]
    # Magics arrive as get_ipython().run_line_magic('name', 'args'); only the read ones pass.
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name) \
            and f.value.func.id == "get_ipython":
        if f.attr in ("run_line_magic", "run_cell_magic") and node.args and _const_str(node.args[0]) in READ_MAGICS:
            return []
        what = _const_str(node.args[0]) if node.args else None
        return [f"runs %{what}" if f.attr.startswith("run_") and what else f"calls get_ipython().{f.attr}"]
    return []


def classify(source: str) -> str:
    """`read` when the cell only reads, else `write` (see `write_reasons`)."""
    return "write" if write_reasons(source) else "read"


def stricter_kind(*kinds: Any) -> str:
    """`write` if any of `kinds` is (or is unknown), else `read`."""
    return "read" if all(k == "read" for k in kinds) else "write"


def counts_as_approval(event_kind: str, data: Mapping[str, Any]) -> bool:
    """Whether a timeline event is a person approving a proposal (not a headless, batch or write run)."""
    if event_kind != "proposal_approved":
        return False
    return not (data.get("headless") or data.get("bulk") or data.get("kind") == "write")


def ran_by_person(event_kind: str, data: Mapping[str, Any]) -> bool:
    """Whether a timeline event is a person choosing to run a proposal (a read's approval or a
    write's request), as opposed to a headless run or a batch (Run All)."""
    if event_kind not in ("proposal_approved", "proposal_run"):
        return False
    return not (data.get("headless") or data.get("bulk"))


def plain_text(value: Any) -> str:
    """Free text made fit for a magic line: characters `safe_label` refuses become spaces."""
    text = "".join(" " if (c in _MAGIC_UNSAFE or ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000
                           or c in "\u2028\u2029\u0085") else c for c in str(value))
    return " ".join(text.split())[:256] or "-"
