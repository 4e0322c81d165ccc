"""The `Telemetry` facade: one object that routes queries to the configured (or recorded) sources.

    tel = Telemetry.from_config(load_config())        # live: Prometheus, Loki, cluster, feeds
    tel = Telemetry.from_bundle("incidents/INC-1/bundle")   # offline replay of a bundle
    df = tel.query_range('rate(http_requests_total{service="checkout"}[5m])', start, end)
    res = tel.safe_query_logs('{service="checkout"} |= "timeout"', start, end)   # QueryResult

Plain methods raise (SourceError, BadInput, UnsupportedQuery); `safe_*` and `run()` return a
`QueryResult` whose status is `ok`, `no_data` or `error` with the message, for investigators.

Connectors are found through the `incidentbook.sources` registry: built-ins are registered on
first use; teams add their own with an entry point in that group. A `[sources.NAME]` section
picks its connector by `kind = "…"`, defaulting to NAME (so `[sources.prometheus]` just works).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from incidentbook.errors import BadInput, IncidentbookError, SourceError
from incidentbook.registry import Registry
from incidentbook.telemetry.base import (
    CHANGE_COLUMNS,
    CONTEXT_COLUMNS,
    EVENT_COLUMNS,
    ChangesSource,
    EventsSource,
    LogsSource,
    MetricsSource,
    QueryResult,
    SourceStatus,
    TimeLike,
)
from incidentbook.telemetry.bundle import to_utc

SOURCES: Registry[Any] = Registry("incidentbook.sources", "telemetry source")

Role = Literal["metrics", "logs", "events", "changes", "context"]
ROLES: tuple[Role, ...] = ("metrics", "logs", "events", "changes", "context")


@dataclass(frozen=True)
class _Lazy:
    """A built-in connector named by import path, imported only when first used."""

    module: str
    attr: str
    roles: tuple[Role, ...]

    def load(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attr)


_BUILTINS: dict[str, _Lazy] = {
    "prometheus": _Lazy("incidentbook.telemetry.prometheus", "PrometheusSource", ("metrics",)),
    "loki": _Lazy("incidentbook.telemetry.loki", "LokiSource", ("logs",)),
    "kubernetes": _Lazy("incidentbook.telemetry.kubernetes", "KubernetesSource", ("events", "changes")),
    "changes": _Lazy("incidentbook.telemetry.changes", "ChangesFeed", ("changes",)),
    "context": _Lazy("incidentbook.telemetry.changes", "ContextCalendar", ("context",)),
    "replay": _Lazy("incidentbook.telemetry.replay", "ReplaySource", ("metrics",)),
}
_KIND_ROLES: dict[str, tuple[Role, ...]] = {k: v.roles for k, v in _BUILTINS.items()}
_HINTS: dict[Role, str] = {
    "metrics": 'add [sources.prometheus] url = "http://prometheus:9090" to incidentbook.toml',
    "logs": 'add [sources.loki] url = "http://loki:3100" to incidentbook.toml',
    "events": "add [sources.kubernetes] (kubeconfig/context or in_cluster = true) to incidentbook.toml",
    "changes": "write deploy markers to changes.jsonl in the workspace or add [sources.kubernetes]",
    "context": "write planned events to context.jsonl in the workspace",
}


def _ensure_builtins() -> None:
    for name, lazy in _BUILTINS.items():
        if name not in SOURCES._items:
            SOURCES.register(name, lazy)


def source_class(kind: str) -> Any:
    """The connector class registered as `kind` (built-in or from an entry point)."""
    _ensure_builtins()
    obj = SOURCES.get(kind)
    if isinstance(obj, _Lazy):
        try:
            obj = obj.load()
        except ImportError as e:
            raise SourceError(f"telemetry source {kind!r} cannot be loaded ({e}); install its extra, "
                              f"e.g. pip install incidentbook[{kind}]") from None
        SOURCES.register(kind, obj)
    return obj


def register_source(kind: str, cls: Any, roles: Iterable[Role] | None = None) -> None:
    """Register a connector class; `roles` default to the protocols its instances implement."""
    _ensure_builtins()
    SOURCES.register(kind, cls)
    if roles is not None:
        _KIND_ROLES[kind] = tuple(roles)


def roles_of(source: Any, kind: str | None = None) -> tuple[Role, ...]:
    """What a source answers: from its kind for built-ins, else from the protocols it implements."""
    kind = kind or getattr(source, "kind", None)
    if kind in _KIND_ROLES:
        return _KIND_ROLES[kind]
    roles: list[Role] = []
    if isinstance(source, MetricsSource):
        roles.append("metrics")
    if isinstance(source, LogsSource):
        roles.append("logs")
    if isinstance(source, EventsSource):
        roles.append("events")
    if isinstance(source, ChangesSource):
        roles += ["changes", "context"]
    return tuple(roles)


class RecordedEvents:
    """Kubernetes events recorded in a bundle (`events.jsonl` rows), answered as an EventsSource."""

    kind = "recorded-events"

    def __init__(self, rows: Iterable[Mapping[str, Any]], name: str = "events") -> None:
        self.name = name
        df = pd.DataFrame([dict(r) for r in rows], columns=list(EVENT_COLUMNS))
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
        df["count"] = pd.to_numeric(df["count"]).fillna(1).astype("int64")
        for c in ("namespace", "kind", "name", "type", "reason", "message"):
            df[c] = df[c].fillna("").astype(str)
        self._df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)

    def events(self, start: TimeLike, end: TimeLike, namespace: str | None = None) -> pd.DataFrame:
        """Events in `[start, end]`, optionally of one namespace."""
        df = self._df
        keep = (df["timestamp"] >= to_utc(start)) & (df["timestamp"] <= to_utc(end))
        if namespace:
            keep &= df["namespace"] == namespace
        return df[keep].reset_index(drop=True)


def _describe(kind: str, args: tuple[Any, ...], kw: Mapping[str, Any]) -> str:
    if kind in ("query_range", "query", "query_logs") and args:
        return str(args[0])
    parts = [f"{to_utc(a).isoformat()}" if i < 2 else str(a) for i, a in enumerate(args)]
    parts += [f"{k}={v}" for k, v in kw.items() if v is not None]
    return f"{kind}({', '.join(parts)})"


class Telemetry:
    """Routes metrics, logs, events, changes and context queries to the right source."""

    def __init__(self, sources: Mapping[str, Any] | Iterable[Any] = (),
                 broken: Iterable[SourceStatus] = (), origin: str = "") -> None:
        """`sources`: name -> source (or sources named by their `.name`). `broken`: ones that failed to build."""
        items = sources.items() if isinstance(sources, Mapping) else ((s.name, s) for s in sources)
        self.sources: dict[str, Any] = dict(items)
        self.broken: dict[str, SourceStatus] = {s.name: s for s in broken}
        self.origin = origin
        self._roles: dict[Role, list[str]] = {r: [] for r in ROLES}
        for name, src in self.sources.items():
            for role in roles_of(src):
                self._roles[role].append(name)
        for st in self.broken.values():
            for role in _KIND_ROLES.get(st.kind, ()):
                self._roles[role].append(st.name)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any) -> Telemetry:
        """Build every `[sources.*]` section; one that fails to build is kept as a status, not raised.

        A workspace `changes.jsonl` / `context.jsonl` (next to incidentbook.toml) is read even
        without a section for it.
        """
        from incidentbook.telemetry.changes import ChangesFeed, ContextCalendar

        workspace = cfg.config_path.parent if cfg.config_path else cfg.home
        built: dict[str, Any] = {}
        broken: list[SourceStatus] = []
        for name, sc in cfg.sources.items():
            kind = str((sc.model_extra or {}).get("kind") or name)
            try:
                klass = source_class(kind)
                if kind in ("changes", "context"):
                    raw = (sc.model_extra or {}).get("path") or f"{kind}.jsonl"
                    path = Path(raw).expanduser()
                    built[name] = klass(path if path.is_absolute() else workspace / path, name=name)
                elif hasattr(klass, "from_config"):
                    built[name] = klass.from_config(sc, name=name)
                else:
                    built[name] = klass(sc.url)
            except IncidentbookError as e:
                broken.append(SourceStatus(name, kind, False, str(e)))
        kinds = {getattr(s, "kind", "") for s in built.values()} | {b.kind for b in broken}
        if "changes" not in kinds and (workspace / "changes.jsonl").exists():
            built["changes"] = ChangesFeed(workspace / "changes.jsonl")
        if "context" not in kinds and (workspace / "context.jsonl").exists():
            built["context"] = ContextCalendar(workspace / "context.jsonl")
        return cls(built, broken, origin=str(cfg.config_path or "defaults"))

    @classmethod
    def from_bundle(cls, path: str | Path) -> Telemetry:
        """Replay a bundle: PromQL over its metrics, LogQL over its logs, and its recorded events,
        changes and context."""
        from incidentbook.telemetry.bundle import open_bundle
        from incidentbook.telemetry.changes import ChangesFeed, ContextCalendar
        from incidentbook.telemetry.logql import LogQLReplay

        bundle = open_bundle(path)
        built: dict[str, Any] = {}
        broken: list[SourceStatus] = []
        try:
            built["metrics"] = source_class("replay")(bundle.path)
        except IncidentbookError as e:
            broken.append(SourceStatus("metrics", "replay", False, str(e)))
        built["logs"] = LogQLReplay(bundle.logs, name="logs")
        built["events"] = RecordedEvents(bundle.events, name="events")
        built["changes"] = ChangesFeed.from_records(bundle.changes, origin=str(bundle.path / "changes.jsonl"))
        built["context"] = ContextCalendar.from_records(bundle.context, origin=str(bundle.path / "context.jsonl"))
        tel = cls(built, broken, origin=str(bundle.path))
        tel.bundle = bundle
        return tel

    bundle: Any = None

    # -- routing -------------------------------------------------------------------------------
    def _pick(self, role: Role, source: str | None = None) -> Any:
        if source is not None:
            if source in self.broken:
                raise SourceError(f"source {source!r} is not usable: {self.broken[source].reason}")
            if source not in self.sources:
                known = ", ".join(sorted(self.sources)) or "none"
                raise BadInput(f"no telemetry source named {source!r}; known: {known}")
            return self.sources[source]
        for name in self._roles[role]:
            if name in self.sources:
                return self.sources[name]
        for name in self._roles[role]:
            raise SourceError(f"the {role} source {name!r} is not usable: {self.broken[name].reason}")
        raise SourceError(f"no {role} source configured; {_HINTS[role]}")

    def _all(self, role: Role) -> list[Any]:
        for name in self._roles[role]:
            if name in self.broken:
                raise SourceError(f"the {role} source {name!r} is not usable: {self.broken[name].reason}")
        return [self.sources[n] for n in self._roles[role]]

    def query_range(self, promql: str, start: TimeLike, end: TimeLike, step: float | None = None,
                    source: str | None = None) -> pd.DataFrame:
        """PromQL over a range, as a metrics long frame."""
        return self._pick("metrics", source).query_range(promql, start, end, step)

    def query(self, promql: str, time: TimeLike | None = None, source: str | None = None) -> pd.DataFrame:
        """PromQL at one instant, as a metrics long frame."""
        return self._pick("metrics", source).query(promql, time)

    def query_logs(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                   direction: Literal["forward", "backward"] = "backward", source: str | None = None) -> pd.DataFrame:
        """LogQL: log lines as a logs frame, or a metrics frame for metric queries."""
        return self._pick("logs", source).query_logs(logql, start, end, limit=limit, direction=direction)

    def events(self, start: TimeLike, end: TimeLike, namespace: str | None = None,
               source: str | None = None) -> pd.DataFrame:
        """Kubernetes events in the window."""
        return self._pick("events", source).events(start, end, namespace)

    def changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame:
        """Changes in the window from every change source (rollouts, feeds), oldest first."""
        frames = [s.changes(start, end, service) for s in self._all("changes")]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=list(CHANGE_COLUMNS)).astype({"timestamp": "datetime64[ns, UTC]"})
        return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)

    def context(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Planned events overlapping the window from every calendar."""
        frames = [s.context(start, end) for s in self._all("context")]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=list(CONTEXT_COLUMNS)).astype(
                {"start": "datetime64[ns, UTC]", "end": "datetime64[ns, UTC]"})
        return pd.concat(frames, ignore_index=True).sort_values("start", kind="stable").reset_index(drop=True)

    # -- results as values ---------------------------------------------------------------------
    def run(self, kind: str, *args: Any, **kw: Any) -> QueryResult:
        """Call `kind` (query_range, query, query_logs, events, changes, context) and return a QueryResult."""
        fn: Callable[..., pd.DataFrame] | None = {
            "query_range": self.query_range, "query": self.query, "query_logs": self.query_logs,
            "events": self.events, "changes": self.changes, "context": self.context,
        }.get(kind)
        if fn is None:
            raise ValueError(f"unknown telemetry call {kind!r}")
        query = _describe(kind, args, kw)
        role: Role = {"query_range": "metrics", "query": "metrics", "query_logs": "logs"}.get(kind, kind)  # type: ignore[assignment]
        src = kw.get("source") or next(iter(self._roles.get(role, [])), "")
        try:
            df = fn(*args, **kw)
        except IncidentbookError as e:
            return QueryResult("error", query, None, str(e), src, {"exception": type(e).__name__})
        return QueryResult("no_data" if df is None or df.empty else "ok", query, df, "", src,
                           {"rows": 0 if df is None else len(df)})

    def safe_query_range(self, promql: str, start: TimeLike, end: TimeLike, step: float | None = None,
                         source: str | None = None) -> QueryResult:
        """`query_range` as a QueryResult."""
        return self.run("query_range", promql, start, end, step, source=source)

    def safe_query(self, promql: str, time: TimeLike | None = None, source: str | None = None) -> QueryResult:
        """`query` as a QueryResult."""
        return self.run("query", promql, time, source=source)

    def safe_query_logs(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                        direction: Literal["forward", "backward"] = "backward",
                        source: str | None = None) -> QueryResult:
        """`query_logs` as a QueryResult."""
        return self.run("query_logs", logql, start, end, limit=limit, direction=direction, source=source)

    def safe_events(self, start: TimeLike, end: TimeLike, namespace: str | None = None,
                    source: str | None = None) -> QueryResult:
        """`events` as a QueryResult."""
        return self.run("events", start, end, namespace=namespace, source=source)

    def safe_changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> QueryResult:
        """`changes` as a QueryResult."""
        return self.run("changes", start, end, service=service)

    def safe_context(self, start: TimeLike, end: TimeLike) -> QueryResult:
        """`context` as a QueryResult."""
        return self.run("context", start, end)

    # -- health --------------------------------------------------------------------------------
    def has(self, role: Role) -> bool:
        """Whether some usable source answers `role`."""
        return any(n in self.sources for n in self._roles[role])

    def status(self) -> list[SourceStatus]:
        """Every source's status, checked cheapest first (configured -> env vars set -> reachable).

        Sources that failed to build report why; missing metrics/logs/events sources are listed
        as not configured. Never raises.
        """
        out: list[SourceStatus] = list(self.broken.values())
        for name, src in self.sources.items():
            kind = str(getattr(src, "kind", type(src).__name__))
            check = getattr(src, "status", None)
            if check is None:
                out.append(SourceStatus(name, kind, True, "available"))
                continue
            try:
                st = check()
                out.append(st if isinstance(st, SourceStatus) else SourceStatus(name, kind, bool(st)))
            except Exception as e:  # a third-party status() must not break the caller
                out.append(SourceStatus(name, kind, False, f"status check failed: {e}"))
        for role in ("metrics", "logs", "events"):
            if not self._roles[role]:  # type: ignore[index]
                out.append(SourceStatus(role, role, False, f"not configured; {_HINTS[role]}"))  # type: ignore[index]
        return out

    def __repr__(self) -> str:
        return f"Telemetry(sources={sorted(self.sources)}, broken={sorted(self.broken)}, origin={self.origin!r})"
