"""The shapes every telemetry source speaks.

DataFrame shapes (documented contract; every connector and the replay engine return these):

- Metrics, long form: `timestamp` (datetime64[ms, UTC]), one string column per label
  (including `__name__` when the result carries it), `value` (float64). One row per sample,
  sorted by series then time. `to_wide()` pivots it to one column per series.
- Logs: `timestamp` (datetime64[ns, UTC]), one string column per stream label, `line`.
- Events (Kubernetes): `timestamp, namespace, kind, name, type, reason, message, count`.
- Changes: `timestamp, service, kind, description, author, details`.
- Context (planned events): `start, end, kind, title, services, details`.

A source implements the capability protocols it can answer. Investigators call through
`QueryResult`-returning wrappers so a failed query is a value they can show, not a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import pandas as pd

TimeLike = Any  # datetime, pandas Timestamp, ISO string or unix seconds

METRIC_FRAME_FIXED = ("timestamp", "value")
LOG_COLUMNS = ("timestamp", "line")
EVENT_COLUMNS = ("timestamp", "namespace", "kind", "name", "type", "reason", "message", "count")
CHANGE_COLUMNS = ("timestamp", "service", "kind", "description", "author", "details")
CONTEXT_COLUMNS = ("start", "end", "kind", "title", "services", "details")


@dataclass
class QueryResult:
    """The outcome of one telemetry call, as a value.

    `status` is `ok` (data has rows), `no_data` (the query ran and matched nothing) or `error`
    (`error` says why, in the backend's own words where it gave any).
    """

    status: Literal["ok", "error", "no_data"]
    query: str
    data: pd.DataFrame | None = None
    error: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class SourceStatus:
    """Whether a source can be used, and why not (checked cheapest first)."""

    name: str
    kind: str
    ok: bool
    reason: str = ""


@runtime_checkable
class MetricsSource(Protocol):
    name: str

    def query_range(self, promql: str, start: TimeLike, end: TimeLike,
                    step: float | None = None) -> pd.DataFrame: ...

    def query(self, promql: str, time: TimeLike | None = None) -> pd.DataFrame: ...


@runtime_checkable
class LogsSource(Protocol):
    name: str

    def query_logs(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                   direction: Literal["forward", "backward"] = "backward") -> pd.DataFrame: ...


@runtime_checkable
class EventsSource(Protocol):
    name: str

    def events(self, start: TimeLike, end: TimeLike, namespace: str | None = None) -> pd.DataFrame: ...


@runtime_checkable
class ChangesSource(Protocol):
    name: str

    def changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame: ...

    def context(self, start: TimeLike, end: TimeLike) -> pd.DataFrame: ...


def to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Pivot a long metrics frame to one column per series (named by its labels), indexed by time."""
    label_cols = [c for c in long.columns if c not in METRIC_FRAME_FIXED]
    if long.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    if label_cols:
        names = long[label_cols].astype(str).agg(
            lambda r: "{" + ",".join(f'{k}="{v}"' for k, v in zip(label_cols, r) if v not in ("", "nan", "None")) + "}",
            axis=1,
        )
    else:
        names = pd.Series("{}", index=long.index)
    return long.assign(series=names).pivot_table(index="timestamp", columns="series", values="value", aggfunc="last")
