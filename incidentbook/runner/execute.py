"""Run a runbook with papermill and always leave a notebook behind.

The pipeline: check the runbook → build parameters (references to secrets, never their values)
→ papermill executes it in the incident directory → the output notebook is stamped with
`metadata.incidentbook = {incident_id, runbook, parameters}`.

A runbook that raises, times out or loses its kernel is a *result*, not an exception: the
partial notebook is written with papermill's red banner at the top and an anchor above the
failing cell, and `run_runbook` returns `RunResult(status="failed", ...)`. Only an invalid
runbook (unreadable, no `parameters` cell, kernel not installed) raises, before anything runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import nbformat

from incidentbook.config import temporary_env
from incidentbook.errors import ConfigError, RunbookError, RunbookFailed
from incidentbook.proposals import HEADLESS_ENV, materialize_proposals
from incidentbook.runner.registry import Runbook, _kernel_available, check_runbook

log = logging.getLogger(__name__)

# Problems that make a runbook impossible to execute at all.
_BLOCKING = ("unreadable", "invalid-notebook", "no-parameters-cell")
# Source settings that may be copied into a notebook. Anything else (a connector's own keys)
# is copied only when its name does not suggest a credential.
_SECRETISH_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|auth", re.I)
_MIN_SECRET_LEN = 4

DEFAULT_WINDOW_BEFORE = timedelta(hours=1)
DEFAULT_WINDOW_AFTER = timedelta(minutes=30)


@dataclass
class RunResult:
    """The outcome of one runbook execution; the notebook exists either way."""

    status: Literal["ok", "failed"]
    notebook: Path
    runbook: str
    cell_index: int | None = None  # index of the failing cell in the output notebook
    ename: str = ""
    evalue: str = ""
    duration_s: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def message(self) -> str:
        """One line for a tired human: what happened and where to look."""
        if self.ok:
            return f"runbook {self.runbook!r} finished in {self.duration_s:.1f} s: {self.notebook}"
        where = f"cell {self.cell_index}" if self.cell_index is not None else "before any cell ran"
        return (f"runbook {self.runbook!r} failed at {where}: {self.ename}: {self.evalue}; "
                f"open {self.notebook} to see what ran")

    def raise_for_status(self) -> None:
        """RunbookFailed (carrying cell index, error name and value) when the run failed."""
        if not self.ok:
            raise RunbookFailed(self.message, cell_index=self.cell_index, ename=self.ename,
                                evalue=self.evalue, notebook=str(self.notebook))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no parameters: they are in the notebook)."""
        return {"status": self.status, "notebook": str(self.notebook), "runbook": self.runbook,
                "cell_index": self.cell_index, "ename": self.ename, "evalue": self.evalue,
                "duration_s": round(self.duration_s, 3)}


def _iso(value: datetime | str) -> str:
    from incidentbook.telemetry.bundle import iso

    return iso(value)


def _source_reference(name: str, settings: Any) -> dict[str, Any]:
    """What a notebook may know about a source: where it is and which env vars hold secrets."""
    raw: dict[str, Any] = settings.model_dump() if hasattr(settings, "model_dump") else dict(settings)
    ref: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("_env") or key in ("url", "timeout_s", "verify_tls"):
            ref[key] = value
        elif _SECRETISH_KEY.search(key):
            log.info("not passing sources.%s.%s to the runbook: it looks like a credential", name, key)
        else:
            ref[key] = value
    url = str(ref.get("url") or "")
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", url, re.I):
        raise ConfigError(
            f"[sources.{name}] url carries a password; remove it from the URL and name an "
            f"environment variable in headers_env instead (the URL is written into notebooks)"
        )
    return ref


def _secret_values(sources: Mapping[str, Any], extra: Iterable[str]) -> dict[str, str]:
    """The secret values we could leak, keyed by where they came from."""
    found: dict[str, str] = {}
    for name, settings in sources.items():
        raw = settings.model_dump() if hasattr(settings, "model_dump") else dict(settings)
        for key, value in raw.items():
            names: list[str] = []
            if key.endswith("_env") and isinstance(value, str):
                names = [value]
            elif key.endswith("_env") and isinstance(value, Mapping):
                names = [v for v in value.values() if isinstance(v, str)]
            for env in names:
                secret = os.environ.get(env, "")
                if len(secret) >= _MIN_SECRET_LEN:
                    found[f"${env} (sources.{name}.{key})"] = secret
    for i, secret in enumerate(extra):
        if secret and len(secret) >= _MIN_SECRET_LEN:
            found[f"secret #{i + 1}"] = secret
    return found


def _assert_no_secrets(parameters: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), f"{path} key")
                walk(v, f"{path}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str):
            for origin, secret in secrets.items():
                if secret in value:
                    raise ConfigError(
                        f"runbook parameter {path} contains the value of {origin}; papermill "
                        f"writes parameters into the notebook in plain text, so pass the "
                        f"environment variable's name instead"
                    )

    for key, value in parameters.items():
        walk(value, key)


def build_parameters(
    *,
    incident_id: str,
    alertname: str,
    service: str = "",
    severity: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    starts_at: datetime | str,
    window_start: datetime | str | None = None,
    window_end: datetime | str | None = None,
    generator_url: str = "",
    sources: Mapping[str, Any] | None = None,
    bundle: str | Path | None = None,
    secrets: Iterable[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The parameters a runbook receives (see DESIGN.md), with secrets as references only.

    `sources` maps a source name to its settings (`SourceConfig` or a dict); only the URL,
    env var names and non-credential settings are passed. `bundle` is the path of a telemetry
    bundle to replay, or empty. The window defaults to one hour before `starts_at` until now
    (at least 30 minutes after it). ConfigError if any value contains a secret: the values of
    the env vars the sources name, plus any in `secrets`.
    """
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    annotations = {str(k): str(v) for k, v in (annotations or {}).items()}
    start = datetime.fromisoformat(_iso(starts_at).replace("Z", "+00:00"))
    current = now or datetime.now(timezone.utc)
    if window_start is None:
        window_start = start - DEFAULT_WINDOW_BEFORE
    if window_end is None:
        window_end = max(current, start + DEFAULT_WINDOW_AFTER)
    sources = dict(sources or {})
    params: dict[str, Any] = {
        "incident_id": incident_id,
        "alertname": alertname,
        "service": service or labels.get("service", ""),
        "severity": severity or labels.get("severity", ""),
        "labels": labels,
        "annotations": annotations,
        "starts_at": _iso(start),
        "window_start": _iso(window_start),
        "window_end": _iso(window_end),
        "generator_url": generator_url,
        "sources": {name: _source_reference(name, s) for name, s in sources.items()},
        "bundle": str(bundle) if bundle else "",
    }
    _assert_no_secrets(params, _secret_values(sources, secrets))
    return params


def _failing_cell(nb: nbformat.NotebookNode) -> int | None:
    for index, cell in enumerate(nb.cells):
        pm = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and (pm.get("status") == "failed" or pm.get("exception") is True):
            return index
    return None


def _error_output(cell: nbformat.NotebookNode) -> tuple[str, str]:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return str(out.get("ename", "")), str(out.get("evalue", ""))
    return "", ""


def _mark_interrupted(nb: nbformat.NotebookNode, ename: str, evalue: str) -> int | None:
    """After a timeout or kernel death papermill leaves no error marker: add one ourselves.

    The failing cell is the last one papermill started; it gets an error output and the
    `failed` status, and the cells after it go back to `pending` (they never ran).
    """
    started = [i for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None
    index = started[-1]
    cell = nb.cells[index]
    # A timed-out cell shows the KeyboardInterrupt from the kernel shutting down; replace it.
    cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"]
    cell.outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                               traceback=[f"{ename}: {evalue}"]))
    cell.metadata.setdefault("papermill", {})
    cell.metadata.papermill["status"] = "failed"
    cell.metadata.papermill["exception"] = True
    nb.metadata.setdefault("papermill", {})["exception"] = True
    for later in nb.cells[index + 1:]:
        pm = later.get("metadata", {}).get("papermill")
        if pm is not None and not pm.get("start_time"):
            pm["status"] = "pending"
    return index


def _stamp(nb: nbformat.NotebookNode, runbook: Runbook, parameters: Mapping[str, Any]) -> None:
    nb.metadata["incidentbook"] = {
        "incident_id": parameters.get("incident_id", ""),
        "runbook": runbook.name,
        "parameters": dict(parameters),
    }


#: Default per-cell output cap (`[runner] max_output_bytes`).
DEFAULT_MAX_OUTPUT_BYTES = 1_000_000


def _output_size(out: Any) -> int:
    return len(json.dumps(out, ensure_ascii=False, default=str).encode("utf-8", "replace"))


def cap_outputs(nb: nbformat.NotebookNode, max_bytes: int) -> int:
    """Cut each code cell's outputs to about `max_bytes`, saying so in the cell; returns cells cut.

    A stream output is cut at the limit (its start is kept); any later output is dropped. The
    cell ends with a stderr line naming the cap and how much was left out, and its metadata
    records `incidentbook.outputs_truncated`, so a chatty runbook cannot make a notebook unopenable.
    """
    cut_cells = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.get("outputs"):
            continue
        sizes = [_output_size(o) for o in cell.outputs]
        total = sum(sizes)
        if total <= max_bytes:
            continue
        kept: list[Any] = []
        used = 0
        for out, size in zip(cell.outputs, sizes):
            if used + size <= max_bytes:
                kept.append(out)
                used += size
                continue
            room = max_bytes - used
            if out.get("output_type") == "stream" and room > 200:
                text = "".join(out.get("text", "")) if isinstance(out.get("text"), list) else str(out.get("text", ""))
                out = nbformat.v4.new_output("stream", name=out.get("name", "stdout"),
                                             text=text.encode("utf-8")[: room - 200].decode("utf-8", "ignore"))
                kept.append(out)
            break
        dropped = total - sum(_output_size(o) for o in kept)
        kept.append(nbformat.v4.new_output(
            "stream", name="stderr",
            text=f"\n[incidentbook: output cut at the {max_bytes:,}-byte cap per cell ([runner] max_output_bytes); "
                 f"{dropped:,} bytes left out]\n"))
        cell.outputs = kept
        cell.metadata.setdefault("incidentbook", {})["outputs_truncated"] = {"cap_bytes": max_bytes,
                                                                             "dropped_bytes": dropped}
        cut_cells += 1
    return cut_cells


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def _ensure_runnable(runbook: Runbook, kernel_name: str | None) -> None:
    # With no kernel given the notebook's own kernelspec is used, so it must be installed.
    codes = _BLOCKING if kernel_name else (*_BLOCKING, "missing-kernel")
    blocking = [p for p in check_runbook(runbook) if p.code in codes]
    if blocking:
        raise RunbookError(f"runbook {runbook.name!r} cannot run: {blocking[0]}")
    if kernel_name and not _kernel_available(kernel_name):
        raise RunbookError(
            f"kernel {kernel_name!r} is not installed; install it (python -m ipykernel install "
            f"--user --name {kernel_name}) or set [runner] kernel_name"
        )


def run_runbook(
    runbook: Runbook,
    parameters: Mapping[str, Any],
    output_path: str | Path,
    cwd: str | Path,
    cell_timeout_s: float,
    kernel_name: str | None = "python3",
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> RunResult:
    """Execute `runbook` with `parameters` into `output_path`, working in `cwd`.

    Returns a RunResult; a runbook that raises, times out (`cell_timeout_s` per cell) or kills
    its kernel gives `status="failed"` and a partial notebook. RunbookError, before anything
    runs, when the runbook is unreadable, lacks a `parameters` cell or its kernel is missing.
    `kernel_name=None` uses the notebook's own kernelspec. Each cell's output is capped at
    `max_output_bytes` in the notebook written (see `cap_outputs`).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _ensure_runnable(runbook, kernel_name)
    output_path = Path(output_path).resolve()
    cwd = Path(cwd).resolve()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    params = json.loads(json.dumps(dict(parameters)))  # plain JSON types, detached from caller

    started = time.monotonic()
    ename = evalue = ""
    interrupted = False
    try:
        # The kernel starts in `cwd` (nbclient's resources path) rather than through
        # papermill's `cwd=`, which os.chdir()s the whole process for the entire run and so
        # would move every other thread (the intake server, concurrent runs) along with it.
        # The kernel inherits our environment: no human is watching, so the extension records
        # proposals as output metadata and refuses writes.
        with temporary_env(HEADLESS_ENV, "1"):
            papermill.execute_notebook(
                str(runbook.path.resolve()), str(output_path), parameters=params,
                execution_timeout=cell_timeout_s, kernel_name=kernel_name or None,
                log_output=False, progress_bar=False,
                # the kernel's start-up warnings (e.g. "running over TCP") are noise on the CLI
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                resources={"metadata": {"path": str(cwd)}},
            )
    except PapermillExecutionError as e:
        ename, evalue = e.ename, e.evalue
    except Exception as e:  # timeout, dead kernel, kernel failed to start: keep the notebook
        interrupted = True
        ename, evalue = _describe_interruption(e, cell_timeout_s)
        log.warning("runbook %s stopped: %s: %s", runbook.name, ename, evalue)
    duration = time.monotonic() - started

    return finish_run(runbook, params, output_path, ename, evalue, interrupted, duration,
                      max_output_bytes=max_output_bytes)


def finish_run(runbook: Runbook, params: Mapping[str, Any], output_path: Path, ename: str, evalue: str,
               interrupted: bool, duration: float,
               max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> RunResult:
    """After papermill (cold or warm kernel): keep the partial notebook, mark where it stopped,
    materialise proposals, stamp the metadata and say what happened."""
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    if output_path.is_file():
        nb = nbformat.read(str(output_path), as_version=4)
    else:  # the kernel never started: start from the runbook itself so nothing is lost
        nb = nbformat.read(str(runbook.path), as_version=4)
    if interrupted:
        _mark_interrupted(nb, ename, evalue)
        try:
            raise_for_execution_errors(nb, str(output_path))  # papermill's banner + anchor cells
        except PapermillExecutionError:
            nb = nbformat.read(str(output_path), as_version=4)
    materialize_proposals(nb)  # recorded proposals become un-run cells below their cell
    cap_outputs(nb, max_output_bytes)
    _stamp(nb, runbook, params)
    # Secrets a cell printed (a connection string, an env dump) are taken out before the
    # notebook is saved; emails and IPs stay for the on-call engineer.
    from incidentbook.redact import process_redactor, redact_notebook

    redactor = process_redactor()
    nb = redact_notebook(nb, redactor, "incident.ipynb")
    _write(nb, output_path)
    evalue = redactor.redact(evalue)  # it goes to the store and the CLI

    if not ename:
        return RunResult("ok", output_path, runbook.name, duration_s=duration, parameters=params)
    index = _failing_cell(nb)
    if index is not None:
        out_ename, out_evalue = _error_output(nb.cells[index])
        ename, evalue = ename or out_ename, evalue or out_evalue
    return RunResult("failed", output_path, runbook.name, cell_index=index, ename=ename,
                     evalue=evalue.strip(), duration_s=duration, parameters=params)


def _describe_interruption(exc: Exception, cell_timeout_s: float) -> tuple[str, str]:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(exc, CellTimeoutError):
        return ("CellTimeoutError",
                f"the cell did not finish within {cell_timeout_s:g} s and was stopped; make it "
                f"faster or raise [runner] cell_timeout_s")
    if isinstance(exc, DeadKernelError):
        return ("DeadKernelError",
                "the kernel died while running this cell (os._exit, a crash or out of memory); "
                "the cells above it ran")
    return type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else ""
