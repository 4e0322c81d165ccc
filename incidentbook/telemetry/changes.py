"""Change feeds and the business-context calendar, read from JSON-lines files in the workspace.

`changes.jsonl`: one change per line, written by CI deploy steps, config pipelines or flag tools:
  {"timestamp": "2026-11-23T10:02:00Z", "service": "checkout", "kind": "deploy",
   "description": "checkout v2.4.1", "author": "ci", "details": {"commit": "abc123"}}
`kind` is free text; `deploy`, `config` and `flag` are the usual ones.

`context.jsonl`: one planned event per line (launches, sales, maintenance windows):
  {"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T12:00:00Z", "kind": "launch",
   "title": "Black Friday campaign", "services": ["checkout", "search"], "details": {}}

Files are re-read on each call, so a feed that CI appends to is always current. A bad line
raises BadInput naming `file:line`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.base import CHANGE_COLUMNS, CONTEXT_COLUMNS, TimeLike
from incidentbook.telemetry.bundle import to_utc


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.exists():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({e}); fix the file's permissions or encoding") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
        if not isinstance(obj, dict):
            raise BadInput(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        rows.append((n, obj))
    return rows


def _time(value: Any, where: str, key: str) -> pd.Timestamp:
    if value in (None, ""):
        raise BadInput(f"{where}: missing {key!r}; give an ISO 8601 time like 2026-11-23T10:00:00Z")
    try:
        return to_utc(value)
    except (ValueError, TypeError):
        raise BadInput(f"{where}: {key} {value!r} is not a time; use ISO 8601 like 2026-11-23T10:00:00Z") from None


def changes_frame(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """Validate change records (`(where, record)` pairs) into the changes frame, oldest first."""
    out = []
    for where, r in rows:
        desc = r.get("description")
        if not desc:
            raise BadInput(f"{where}: missing 'description'; say what changed, e.g. \"checkout v2.4.1\"")
        details = r.get("details") or {}
        if not isinstance(details, dict):
            raise BadInput(f"{where}: 'details' must be a JSON object")
        out.append({"timestamp": _time(r.get("timestamp"), where, "timestamp"),
                    "service": str(r.get("service") or ""), "kind": str(r.get("kind") or "change"),
                    "description": str(desc), "author": str(r.get("author") or ""), "details": details})
    df = pd.DataFrame(out, columns=list(CHANGE_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


def context_frame(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """Validate planned-event records (`(where, record)` pairs) into the context frame."""
    out = []
    for where, r in rows:
        title = r.get("title")
        if not title:
            raise BadInput(f"{where}: missing 'title'; name the planned event")
        start = _time(r.get("start"), where, "start")
        end = _time(r.get("end") or r.get("start"), where, "end")
        if end < start:
            raise BadInput(f"{where}: end {r.get('end')!r} is before start {r.get('start')!r}; swap them")
        services = r.get("services") or []
        if isinstance(services, str):
            services = [services]
        if not isinstance(services, list):
            raise BadInput(f"{where}: 'services' must be a list of service names")
        out.append({"start": start, "end": end, "kind": str(r.get("kind") or "planned"), "title": str(title),
                    "services": [str(s) for s in services], "details": r.get("details") or {}})
    df = pd.DataFrame(out, columns=list(CONTEXT_COLUMNS))
    for c in ("start", "end"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df.sort_values("start", kind="stable").reset_index(drop=True)


def filter_changes(df: pd.DataFrame, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame:
    """Changes in `[start, end]`, optionally of one service."""
    keep = (df["timestamp"] >= to_utc(start)) & (df["timestamp"] <= to_utc(end))
    if service:
        keep &= df["service"] == service
    return df[keep].reset_index(drop=True)


def filter_context(df: pd.DataFrame, start: TimeLike, end: TimeLike) -> pd.DataFrame:
    """Planned events overlapping `[start, end]`."""
    keep = (df["start"] <= to_utc(end)) & (df["end"] >= to_utc(start))
    return df[keep].reset_index(drop=True)


class ChangesFeed:
    """Deploys, config and flag changes from a `changes.jsonl` file (or recorded rows)."""

    kind = "changes"

    def __init__(self, path: str | Path, name: str = "changes") -> None:
        self.path = Path(path)
        self.name = name
        self._rows: list[dict[str, Any]] | None = None

    @classmethod
    def from_records(cls, rows: Iterable[Mapping[str, Any]], name: str = "changes",
                     origin: str = "changes.jsonl") -> ChangesFeed:
        """A feed over rows already in memory (e.g. a bundle's); `origin` names them in errors."""
        feed = cls(origin, name)
        feed._rows = [dict(r) for r in rows]
        return feed

    def _frame(self) -> pd.DataFrame:
        if self._rows is not None:
            return changes_frame((f"{self.path}:{i}", r) for i, r in enumerate(self._rows, 1))
        return changes_frame((f"{self.path}:{n}", r) for n, r in _read_jsonl(self.path))

    def changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame:
        """Changes in `[start, end]`, oldest first."""
        return filter_changes(self._frame(), start, end, service)

    def context(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """A change feed holds no planned events: always empty."""
        return context_frame(())


class ContextCalendar:
    """Planned events (launches, campaigns, maintenance) from a `context.jsonl` file."""

    kind = "context"

    def __init__(self, path: str | Path, name: str = "context") -> None:
        self.path = Path(path)
        self.name = name
        self._rows: list[dict[str, Any]] | None = None

    @classmethod
    def from_records(cls, rows: Iterable[Mapping[str, Any]], name: str = "context",
                     origin: str = "context.jsonl") -> ContextCalendar:
        """A calendar over rows already in memory (e.g. a bundle's)."""
        cal = cls(origin, name)
        cal._rows = [dict(r) for r in rows]
        return cal

    def _frame(self) -> pd.DataFrame:
        if self._rows is not None:
            return context_frame((f"{self.path}:{i}", r) for i, r in enumerate(self._rows, 1))
        return context_frame((f"{self.path}:{n}", r) for n, r in _read_jsonl(self.path))

    def context(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Planned events overlapping `[start, end]`."""
        return filter_context(self._frame(), start, end)

    def changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame:
        """A calendar holds no changes: always empty."""
        return changes_frame(())
