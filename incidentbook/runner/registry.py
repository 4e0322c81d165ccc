"""Runbook registry: find runbook notebooks, pick the one that matches an alert, check them.

Runbooks come from two places. The package ships some (`runbooks/` in a source checkout,
`incidentbook/_data/runbooks` in an installed wheel); the workspace adds its own in
`cfg.workspace_runbooks`. A workspace runbook replaces a package runbook of the same name
(the file stem).

Each runbook describes when it applies in `metadata.incidentbook`:

```json
{"title": "Checkout errors", "match": {"service": "checkout"},
 "match_re": {"alertname": "High.*Rate"}, "priority": 10, "owner": "team-payments",
 "description": "What this runbook looks at"}
```

A runbook matches an alert when every `match` label equals the alert's value and every
`match_re` regex fully matches it. Among matches the most specific wins: more conditions, then
more exact conditions, then higher `priority`, then the name in alphabetical order. A runbook
without conditions is never picked automatically, except `generic`, the fallback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import nbformat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incidentbook.errors import NotFound, RunbookError

if TYPE_CHECKING:
    from incidentbook.config import Config

log = logging.getLogger(__name__)

GENERIC = "generic"
PARAMETERS_TAG = "parameters"
DEFAULT_KERNEL = "python3"

Origin = Literal["package", "workspace"]


class RunbookMeta(BaseModel):
    """The schema of `metadata.incidentbook` in a runbook; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    title: str = ""
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    priority: int = 0
    owner: str = ""
    description: str = ""


@dataclass
class Runbook:
    """One runbook notebook and its match metadata.

    `error` is set when the notebook could not be read or its metadata is invalid; such a
    runbook is listed (so `runbooks check` can report it) but never selected.
    """

    name: str
    path: Path
    title: str = ""
    match: dict[str, str] = field(default_factory=dict)
    match_re: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    owner: str = ""
    description: str = ""
    origin: Origin = "package"
    error: str = ""

    @property
    def conditions(self) -> int:
        """How many label conditions this runbook sets (its specificity)."""
        return len(self.match) + len(self.match_re)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every `match` and `match_re` condition holds for `labels`."""
        if self.error:
            return False
        for key, want in self.match.items():
            if labels.get(key) != want:
                return False
        for key, pattern in self.match_re.items():
            value = labels.get(key)
            if value is None:
                return False
            try:
                if re.fullmatch(pattern, str(value)) is None:
                    return False
            except re.error:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for `runbooks list --json`)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "title": self.title,
            "match": dict(self.match),
            "match_re": dict(self.match_re),
            "priority": self.priority,
            "owner": self.owner,
            "description": self.description,
            "origin": self.origin,
            "error": self.error,
        }


@dataclass
class Problem:
    """One thing wrong with a runbook, with the fix in `message`."""

    runbook: str
    path: Path
    code: str  # unreadable | invalid-notebook | bad-metadata | no-parameters-cell | bad-regex | missing-kernel
    message: str

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready description (for `runbooks check --json`)."""
        return {"runbook": self.runbook, "path": str(self.path), "code": self.code,
                "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def package_data_dir(kind: Literal["runbooks", "templates"]) -> Path:
    """Where the package's `runbooks/` or `templates/` live (wheel or source checkout)."""
    pkg = Path(__file__).resolve().parent.parent
    installed = pkg / "_data" / kind
    if installed.is_dir():
        return installed
    return pkg.parent / kind


def template_path(name: str = "incident") -> Path:
    """The path of a shipped notebook template, e.g. `template_path("incident")`."""
    path = package_data_dir("templates") / f"{name}.ipynb"
    if not path.is_file():
        raise NotFound(f"No template named {name!r} at {path}; reinstall incidentbook")
    return path


def _format_meta_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    if first["type"] == "extra_forbidden":
        known = ", ".join(RunbookMeta.model_fields)
        return (f"unknown key {where!r} in metadata.incidentbook; "
                f"use one of: {known}")
    return f"metadata.incidentbook.{where}: {first['msg']}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunbookError(f"{path}: cannot read ({e.strerror}); check the file's permissions") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunbookError(f"{path}: not valid notebook JSON ({e}); re-save it from Jupyter") from None
    if not isinstance(data, dict):
        raise RunbookError(f"{path}: not a notebook (top level is not a JSON object); re-save it from Jupyter")
    return data


def _meta_of(data: Mapping[str, Any]) -> RunbookMeta:
    metadata = data.get("metadata")
    raw = metadata.get("incidentbook", {}) if isinstance(metadata, Mapping) else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RunbookError("metadata.incidentbook must be an object; see runbooks/generic.ipynb")
    try:
        return RunbookMeta.model_validate(raw)
    except ValidationError as e:
        raise RunbookError(_format_meta_error(e)) from None


def read_runbook(path: str | Path, origin: Origin = "workspace") -> Runbook:
    """Read one runbook's metadata; an unreadable runbook comes back with `error` set."""
    path = Path(path)
    rb = Runbook(name=path.stem, path=path, origin=origin)
    try:
        meta = _meta_of(_read_json(path))
    except RunbookError as e:
        msg = str(e)
        rb.error = msg if msg.startswith(str(path)) else f"{path}: {msg}"
        return rb
    rb.title = meta.title or path.stem.replace("_", " ").replace("-", " ").capitalize()
    rb.match, rb.match_re = dict(meta.match), dict(meta.match_re)
    rb.priority, rb.owner, rb.description = meta.priority, meta.owner, meta.description
    return rb


def _scan(directory: Path, origin: Origin) -> dict[str, Runbook]:
    found: dict[str, Runbook] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.ipynb")):
        if path.name.startswith("."):
            continue
        found[path.stem] = read_runbook(path, origin)
    return found


def load_runbooks(cfg: Config | None = None, *, package_dir: Path | None = None,
                  workspace_dir: Path | None = None) -> list[Runbook]:
    """Every runbook, package ones first overridden by workspace ones of the same name.

    `package_dir` and `workspace_dir` override where to look (tests, tools); by default the
    package's shipped runbooks and `cfg.workspace_runbooks`.
    """
    pkg = package_dir if package_dir is not None else package_data_dir("runbooks")
    ws = workspace_dir if workspace_dir is not None else (cfg.workspace_runbooks if cfg else None)
    runbooks = _scan(pkg, "package")
    if ws is not None and ws.resolve() != pkg.resolve():
        runbooks.update(_scan(ws, "workspace"))
    for rb in runbooks.values():
        if rb.error:
            log.warning("runbook %s is unusable and will not be selected: %s", rb.name, rb.error)
    return sorted(runbooks.values(), key=lambda r: r.name)


def _specificity(rb: Runbook) -> tuple[int, int, int, str]:
    # Sort ascending: more conditions, more exact ones, higher priority, then name.
    return (-rb.conditions, -len(rb.match), -rb.priority, rb.name)


def select_runbook(labels: Mapping[str, str], runbooks: Iterable[Runbook]) -> Runbook:
    """The most specific runbook matching the alert `labels`, else `generic`.

    RunbookError when nothing matches and there is no usable `generic` runbook.
    """
    candidates = [rb for rb in runbooks if not rb.error]
    matching = [rb for rb in candidates if rb.conditions and rb.matches(labels)]
    if matching:
        return min(matching, key=_specificity)
    for rb in candidates:
        if rb.name == GENERIC:
            return rb
    alertname = labels.get("alertname", "")
    stem = re.sub(r"[^a-z0-9]+", "_", alertname.lower()).strip("_") or "my_alert"
    raise RunbookError(
        f"No runbook matches alertname={alertname!r}; add runbooks/{stem}.ipynb or a generic runbook"
    )


def get_runbook(name: str, runbooks: Iterable[Runbook]) -> Runbook:
    """The runbook called `name`; NotFound lists the known names."""
    runbooks = list(runbooks)
    for rb in runbooks:
        if rb.name == name:
            return rb
    known = ", ".join(rb.name for rb in runbooks) or "none"
    raise NotFound(f"No runbook named {name!r}; known: {known}. Run `incidentbook runbooks list`")


def _kernel_available(name: str) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    return True


def check_runbook(rb: Runbook) -> list[Problem]:
    """Everything wrong with one runbook; an empty list means it is ready to run."""
    problems: list[Problem] = []

    def add(code: str, message: str) -> None:
        problems.append(Problem(runbook=rb.name, path=rb.path, code=code, message=message))

    try:
        data = _read_json(rb.path)
    except RunbookError as e:
        add("unreadable", str(e).removeprefix(f"{rb.path}: "))
        return problems

    try:
        nb = nbformat.from_dict(data)
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        add("invalid-notebook", f"not a valid notebook at {where}: {e.message}; re-save it from Jupyter")
    except Exception as e:  # nbformat raises assorted errors on badly shaped documents
        add("invalid-notebook", f"not a valid notebook ({e}); re-save it from Jupyter")

    try:
        meta = _meta_of(data)
    except RunbookError as e:
        add("bad-metadata", str(e))
        meta = None
    if meta is not None:
        for key, pattern in meta.match_re.items():
            try:
                re.compile(pattern)
            except re.error as e:
                add("bad-regex", f"match_re[{key!r}] = {pattern!r} is not a valid regex ({e}); fix the pattern")

    cells = data.get("cells") if isinstance(data.get("cells"), list) else []
    has_params = any(
        isinstance(c, Mapping) and c.get("cell_type") == "code"
        and PARAMETERS_TAG in ((c.get("metadata") or {}).get("tags") or [])
        for c in cells
    )
    if not has_params:
        add("no-parameters-cell",
            "no code cell tagged 'parameters'; add one (Property Inspector > Cell Tags) holding "
            "the defaults incident_id, alertname, service, labels, …")

    metadata = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    kernelspec = metadata.get("kernelspec") if isinstance(metadata.get("kernelspec"), Mapping) else {}
    kernel = kernelspec.get("name") or DEFAULT_KERNEL
    if not _kernel_available(str(kernel)):
        add("missing-kernel",
            f"kernel {kernel!r} (metadata.kernelspec.name) is not installed; install it or set "
            f"the notebook's kernel to {DEFAULT_KERNEL!r}")
    return problems
