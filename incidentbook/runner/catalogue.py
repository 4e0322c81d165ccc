"""The runbook catalogue's tools: scaffold a runbook, test runbooks on scenarios, suggest changes.

- `new_runbook` writes `NAME.ipynb` and its jupytext pair `NAME.py` (percent format), so reviews
  read a diff of plain Python rather than notebook JSON.
- `run_runbook_tests` runs each runbook on the scenario alerts that select it, against the scenario's
  replayed bundle, and reports which ran clean.
- `suggest_runbook_change` compares an incident notebook with its runbook: the code cells the
  responders added and ran (the `cell_executed` timeline events carry each cell's source hash)
  become a proposed runbook change, shown as a unified diff of the jupytext text.
"""

from __future__ import annotations

import difflib
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from incidentbook.config import HOME_ENV, temporary_env
from incidentbook.errors import BadInput, NotFound, RunbookError
from incidentbook.proposals import proposal_id_of, source_hash
from incidentbook.runner.registry import Runbook, get_runbook, load_runbooks, select_runbook

if TYPE_CHECKING:
    from incidentbook.config import Config

#: How runbooks are paired: the notebook and a percent-format Python script next to it.
JUPYTEXT_FORMATS = "ipynb,py:percent"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ALERT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:]*$")


def _jupytext() -> Any:
    try:
        import jupytext
    except ImportError:  # pragma: no cover - a dependency, but say what to do if it is missing
        raise RunbookError("runbook pairing needs jupytext: pip install jupytext") from None
    return jupytext


def runbook_text(nb: nbformat.NotebookNode) -> str:
    """The jupytext percent-format text of a notebook (what reviewers read)."""
    jupytext = _jupytext()
    nb = nbformat.from_dict(nbformat.from_dict(nb))
    nb.metadata.setdefault("jupytext", {}).update(
        {"formats": JUPYTEXT_FORMATS, "notebook_metadata_filter": "incidentbook,kernelspec,-all",
         "cell_metadata_filter": "tags,-all"})
    return str(jupytext.writes(nb, fmt="py:percent"))


def write_paired(nb: nbformat.NotebookNode, path: Path) -> tuple[Path, Path]:
    """Write `nb` to `path` (.ipynb) and its percent-format pair next to it; returns both paths."""
    jupytext = _jupytext()
    text = runbook_text(nb)
    paired = jupytext.reads(text, fmt="py:percent")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(paired, str(path))
    script = path.with_suffix(".py")
    script.write_text(text, encoding="utf-8")
    return path, script


# ---------------------------------------------------------------- new

_SCAFFOLD = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   incidentbook:
#     title: {title}
#     match:
#       alertname: {alert}
#     priority: 0
#     owner: ''
#     description: 'What this runbook checks for {alert}.'
# ---

# %% [markdown]
# # {title}
#
# What {alert} means, what usually causes it and what to look at first. Write it for a tired on-call
# engineer: short, concrete, with the next step.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "{alert}"
service = "checkout"
severity = "warning"
labels = {{"alertname": "{alert}", "service": "checkout", "severity": "warning", "namespace": "shop"}}
annotations = {{"summary": "{alert} on checkout"}}
starts_at = "2026-11-23T10:00:00.000Z"
window_start = "2026-11-23T09:00:00.000Z"
window_end = "2026-11-23T10:30:00.000Z"
generator_url = ""
# Telemetry sources as references: URLs and the NAMES of environment variables holding secrets.
sources = {{}}
# Path of a telemetry bundle to replay instead of querying live sources ("" for none).
bundle = ""

# %%
%load_ext incidentbook
from incidentbook.notebook import Panel, propose_next, show_alert, show_changes, show_error_logs, show_panels

namespace = labels.get("namespace", "")
# Every evidence helper takes the same scope: where the telemetry is and which window to show.
scope = dict(sources=sources, bundle=bundle, service=service, namespace=namespace,
             window_start=window_start, window_end=window_end, starts_at=starts_at)

# %% [markdown]
# ## Alert

# %%
show_alert(alertname=alertname, service=service, severity=severity, labels=labels,
           annotations=annotations, starts_at=starts_at, generator_url=generator_url,
           incident_id=incident_id)

# %% [markdown]
# ## Evidence
#
# Replace these panels with the signals that tell this alert's causes apart. `{{service}}` and
# `{{namespace}}` are filled in; `worse="down"` for signals where lower is bad (hit ratio, free space).

# %%
evidence = show_panels([
    Panel("Requests per second", 'sum(rate(http_requests_total{{{{service="{{service}}"}}}}[5m]))', "req/s"),
    Panel("5xx error ratio", 'sum(rate(http_requests_total{{{{service="{{service}}",code=~"5.."}}}}[5m])) / sum(rate(http_requests_total{{{{service="{{service}}"}}}}[5m]))', "ratio"),
], **scope)

# %%
changes = show_changes(**scope)
show_error_logs(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval. Use `kind="write"` with
# `ib.act.rollout_undo / scale / restart` for changes; they need a person and respect the policy.

# %%
propose_next(f"error lines of {{service}}",
             f'%logql {{{{service="{{service}}"}}}} |~ "(?i)error" --limit 30',
             "Read the newest errors before acting.")

# %% [markdown]
# ## Investigation

# %%
if bundle or sources:
    %investigate
else:
    print("No telemetry configured: nothing to investigate yet.")
'''


def scaffold_text(alertname: str, title: str = "") -> str:
    """The percent-format text of a new runbook for `alertname`."""
    if not _ALERT_RE.match(alertname):
        raise BadInput(f"alert name {alertname!r} is not a Prometheus alert name; use e.g. QueueBacklog")
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", alertname).replace("_", " ")
    title = title or (words[:1].upper() + words[1:].lower())
    return _SCAFFOLD.format(alert=alertname, title=title.replace("\n", " "))


def new_runbook(name: str, alertname: str, directory: Path, title: str = "",
                force: bool = False) -> tuple[Path, Path]:
    """Scaffold runbook `name` for `alertname` in `directory` (notebook + jupytext pair)."""
    if not _NAME_RE.match(name):
        raise BadInput(f"runbook name {name!r} must be lower-case letters, digits, - or _; e.g. queue_backlog")
    path = directory / f"{name}.ipynb"
    if path.exists() and not force:
        raise BadInput(f"{path} already exists; pick another name or pass --force to overwrite it")
    nb = _jupytext().reads(scaffold_text(alertname, title), fmt="py:percent")
    return write_paired(nb, path)


# ---------------------------------------------------------------- test

@dataclass
class RunbookTest:
    """One runbook run on one scenario alert."""

    runbook: str
    scenario: str
    alertname: str
    service: str
    status: str  # ok | failed
    message: str = ""
    duration_s: float = 0.0
    notebook: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `runbooks test --json`)."""
        return dict(self.__dict__)


@dataclass
class RunbookTestReport:
    """What `run_runbook_tests` found: runs, and runbooks no scenario alert selected."""

    runs: list[RunbookTest] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every run succeeded."""
        return all(r.status == "ok" for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `runbooks test --json`)."""
        return {"ok": self.ok, "runs": [r.to_dict() for r in self.runs], "untested": self.untested}


def run_runbook_tests(runbooks: list[Runbook], names: Iterable[str] = (),
                  scenarios: Iterable[str] = (), out_dir: Path | None = None,
                  duration: str = "1h", cell_timeout_s: float = 120) -> RunbookTestReport:
    """Run each runbook on the first scenario alert that selects it, against that scenario's bundle.

    `names` limits the runbooks tested, `scenarios` the scenarios generated (default: all).
    Notebooks are kept in `out_dir` when given (else a temporary directory).
    """
    import pandas as pd

    from incidentbook.runner.execute import build_parameters, run_runbook
    from incidentbook.scenarios import generate, list_scenarios

    wanted = set(names)
    known = {rb.name for rb in runbooks}
    if wanted - known:
        raise NotFound(f"unknown runbook(s) {sorted(wanted - known)}; `incidentbook runbooks list` shows the names")
    scenario_names = list(scenarios) or [s.name for s in list_scenarios()]
    report = RunbookTestReport()
    # Test runs are not incidents: their kernels must not touch the real store or audit log.
    with tempfile.TemporaryDirectory(prefix="incidentbook-runbook-test-") as tmp, \
            temporary_env(HOME_ENV, str(Path(tmp) / "home")):
        root = Path(out_dir) if out_dir else Path(tmp)
        done: set[str] = set()
        for scenario in scenario_names:
            gen = generate(scenario, root / "scenarios" / scenario, seed=0, duration=duration)
            for alert in gen.alerts:
                rb = select_runbook(alert.labels, runbooks)
                if rb.name in done or (wanted and rb.name not in wanted):
                    continue
                done.add(rb.name)
                window = gen.manifest["window"]
                params = build_parameters(
                    incident_id=f"INC-TEST-{scenario}", alertname=alert.labels["alertname"],
                    labels=alert.labels, annotations=alert.annotations,
                    starts_at=pd.Timestamp(alert.fired_at, unit="s", tz="UTC").isoformat(),
                    window_start=window["start"], window_end=window["end"], bundle=gen.bundle_dir)
                work = root / "runs" / rb.name
                result = run_runbook(rb, params, work / "notebook.ipynb", work, cell_timeout_s)
                report.runs.append(RunbookTest(
                    runbook=rb.name, scenario=scenario, alertname=alert.labels["alertname"],
                    service=alert.labels.get("service", ""), status=result.status,
                    message="" if result.ok else result.message, duration_s=round(result.duration_s, 2),
                    notebook=str(result.notebook) if out_dir else ""))
        report.untested = sorted((wanted or known) - done)
    return report


# ---------------------------------------------------------------- suggest

@dataclass
class Suggestion:
    """A proposed runbook change from what the responders ran during an incident."""

    incident_id: str
    runbook: str
    runbook_path: Path
    cells: list[str]
    diff: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `runbooks suggest --json`)."""
        return {"incident_id": self.incident_id, "runbook": self.runbook,
                "runbook_path": str(self.runbook_path), "cells": self.cells, "diff": self.diff}


def _is_write(cell: Any) -> bool:
    prop = cell.get("metadata", {}).get("incidentbook", {}).get("proposal") or {}
    return prop.get("kind") == "write" or "ib.act." in cell.source


def added_cells(runbook_nb: Any, incident_nb: Any, executed: set[str] | None) -> list[Any]:
    """Code cells of the incident notebook that the runbook lacks and that ran without error.

    `executed` holds the source hashes of cells that ran (from the timeline); None falls back to
    the saved execution counts. Write actions never become runbook steps: they stay proposals.
    """
    known = {source_hash(c.source) for c in runbook_nb.cells if c.cell_type == "code"}
    out, seen = [], set()
    for cell in incident_nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "parameters" in tags or _is_write(cell):
            continue
        h = source_hash(cell.source)
        if h in known or h in seen:
            continue
        ran = h in executed if executed is not None else cell.get("execution_count") is not None
        failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if ran and not failed:
            seen.add(h)
            out.append(cell)
    return out


def _clean_source(source: str) -> str:
    # A proposal header names a proposal of one incident; in the runbook it is a plain comment.
    lines = source.strip("\n").split("\n")
    pid = proposal_id_of(source)
    if pid:
        lines[0] = re.sub(r"^#\s*proposal\s+\S+?:?\s*", "# ", lines[0], flags=re.IGNORECASE).rstrip()
        if lines[0] == "#":
            lines = lines[1:]
    return "\n".join(lines)


def propose_runbook(runbook_nb: Any, cells: list[Any], incident_id: str) -> Any:
    """The runbook with `cells` added under a heading, before its closing markdown cells."""
    nb = nbformat.from_dict(runbook_nb)
    insert_at = len(nb.cells)
    while insert_at > 0 and nb.cells[insert_at - 1].cell_type == "markdown":
        insert_at -= 1
    new = [nbformat.v4.new_markdown_cell(
        f"## Also checked during {incident_id}\n\nThe responders added and ran these cells; "
        "keep the ones worth running every time.")]
    new += [nbformat.v4.new_code_cell(_clean_source(c.source)) for c in cells]
    nb.cells[insert_at:insert_at] = new
    return nb


def suggest_runbook_change(cfg: Config, incident_id: str) -> Suggestion:
    """Turn the cells responders added and ran in `incident_id` into a runbook diff."""
    from incidentbook.incidents import Store

    store = Store.from_config(cfg)
    incident = store.get_incident(incident_id)
    if not incident.runbook or not incident.notebook:
        raise BadInput(f"{incident_id} has no runbook notebook yet; wait for its runbook run or re-run it")
    notebook = Path(incident.notebook)
    if not notebook.is_file():
        raise NotFound(f"{notebook}: the notebook of {incident_id} is missing; restore it from the library")
    rb = get_runbook(incident.runbook, load_runbooks(cfg))
    runbook_nb = nbformat.read(str(rb.path), as_version=4)
    incident_nb = nbformat.read(str(notebook), as_version=4)
    events = [e for e in store.timeline(incident_id) if e.kind == "cell_executed"]
    executed = ({str((e.data or {}).get("source_hash")) for e in events
                 if (e.data or {}).get("outcome") == "ok"} if events else None)
    cells = added_cells(runbook_nb, incident_nb, executed)
    before = runbook_text(runbook_nb)
    diff = ""
    if cells:
        after = runbook_text(propose_runbook(runbook_nb, cells, incident_id))
        rel = f"runbooks/{rb.name}.py"
        diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                            fromfile=f"a/{rel}", tofile=f"b/{rel}"))
    return Suggestion(incident_id=incident.id, runbook=rb.name, runbook_path=rb.path,
                      cells=[_clean_source(c.source) for c in cells], diff=diff)
