"""What every check shares: the read-only probe over telemetry, findings, service mapping."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.agent.base import Evidence, InvestigationContext
from incidentbook.analysis.anomaly import Anomaly, score_anomaly
from incidentbook.telemetry import topology
from incidentbook.telemetry.base import METRIC_FRAME_FIXED, QueryResult
from incidentbook.telemetry.bundle import iso, to_utc
from incidentbook.telemetry.signals import Catalogue, Discovery, Resolved, list_series, map_service

# Labels that name a workload, most specific first. `pod`/`instance` carry suffixes or ports.
EXACT_LABELS = ("service", "job", "app", "app_kubernetes_io_name", "container", "deployment",
                "statefulset", "target_service", "server")
FUZZY_LABELS = ("pod", "instance", "target", "host", "server_name", "url")


@dataclass
class Finding:
    """One anomalous signal a check found, and which fault kind (if any) it points at."""

    service: str
    signal: str  # what moved, in an SRE's words: "5xx ratio", "p95 latency", "cache hit ratio"
    strength: float  # 0..1, how far out of baseline (or how conclusive) it is
    onset: pd.Timestamp | None
    evidence: Evidence
    kind: str = ""  # fault kind this signal is specific to; "" for a generic symptom
    generic: bool = False  # errors/latency any fault can cause (used to place roots)
    detail: dict[str, Any] = field(default_factory=dict)


class Probe:
    """Read-only access to the incident's telemetry; every failed call is kept, not raised."""

    def __init__(self, ctx: InvestigationContext, step_s: float | None = None) -> None:
        self.ctx = ctx
        self.tel = ctx.telemetry
        self.start = to_utc(ctx.window_start)
        self.end = to_utc(ctx.window_end)
        span = (self.end - self.start).total_seconds()
        self.step = step_s or float(max(15, int(span / 240 / 15) * 15))
        self.errors: list[str] = []
        self.services = list(ctx.services) or sorted(set(ctx.topology) | {d for v in ctx.topology.values() for d in v})
        self._names: set[str] | None = None
        self._discovery: Discovery | None = None
        self.external: dict[str, set[str]] = {}  # dependencies with no series: node -> callers
        self.catalogue: Catalogue = getattr(ctx, "catalogue", None) or self._configured_catalogue()
        self.cache: dict[str, Any] = {}  # results several checks share (one query, not two)

    def _configured_catalogue(self) -> Catalogue:
        """Built-in dialects plus the `[signals.*]` mappings of the incidentbook.toml in effect."""
        from incidentbook.errors import IncidentbookError

        try:
            from incidentbook.config import load_config

            return Catalogue(load_config().signals)
        except (IncidentbookError, ValueError) as e:  # a bad mapping is shown, built-ins still work
            self.errors.append(f"[signals] mappings not used: {e}")
            return Catalogue()

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, kind: str, *args: Any, **kw: Any) -> QueryResult:
        safe = getattr(self.tel, f"safe_{kind}", None)
        if safe is not None:
            res: QueryResult = safe(*args, **kw)
        else:  # a bare source: wrap it so a failure is a value
            query = str(args[0]) if args and isinstance(args[0], str) else kind
            try:
                df = getattr(self.tel, kind)(*args, **kw)
                res = QueryResult("ok" if len(df) else "no_data", query, df)
            except Exception as e:  # noqa: BLE001 - any backend failure becomes a shown error
                res = QueryResult("error", query, None, f"{type(e).__name__}: {e}")
        if res.status == "error":
            self.errors.append(f"{kind} {res.query!r}: {res.error}")
        return res

    def range(self, promql: str) -> pd.DataFrame:
        """A PromQL range query over the incident window; empty frame on no data or error."""
        res = self._call("query_range", promql, self.start, self.end, self.step)
        return res.data if res.ok and res.data is not None else pd.DataFrame()

    def logs(self, logql: str, start: Any = None, end: Any = None, limit: int = 5000) -> pd.DataFrame:
        """Log lines for a LogQL selector (forward in time)."""
        res = self._call("query_logs", logql, start or self.start, end or self.end, limit=limit,
                         direction="forward")
        return res.data if res.ok and res.data is not None else pd.DataFrame()

    def table(self, kind: str, *args: Any, **kw: Any) -> pd.DataFrame:
        """events / changes / context rows over the window (or the given bounds)."""
        a = args or (self.start, self.end)
        res = self._call(kind, *a, **kw)
        return res.data if res.ok and res.data is not None else pd.DataFrame()

    def metric_names(self) -> set[str]:
        """Metric names the source knows (from the discovery listing; empty if unsupported)."""
        if self._names is None:
            self.discovery()
        return self._names or set()

    def discovery(self) -> Discovery:
        """Which dialect each service speaks, from one series listing (cached per investigation)."""
        if self._discovery is None:
            listing, errors = list_series(self.tel, self.start, self.end)
            if listing.empty:
                self.errors.extend(errors)
            else:
                self._names = set(listing["__name__"].astype(str))
            self.external = topology.external_nodes(listing, self.services)
            self.services += sorted(n for n in self.external if n not in self.services)
            self._discovery = self.catalogue.discover(listing, self.services)
            for svc in self._discovery.without_own_series():  # named in the topology, but outside
                self.external.setdefault(svc, set())
        return self._discovery

    def topology(self) -> dict[str, list[str]]:
        """The configured topology plus the edges the metrics show (mesh, service graph, clients)."""
        if "topology" not in self.cache:
            self.discovery()
            frames = []
            for q, a, b in topology.edge_queries(self._names or ()):
                res = self._call("query", q, self.end)
                if res.ok and res.data is not None:
                    frames.append((res.data, a, b))
            edges = topology.edges_from_frames(frames, self.services)
            callers_of = {n: callers for n, callers in self.external.items()}
            ext = {c: {n} for n, cs in callers_of.items() for c in cs}
            alias = {a: {node} for a, node in topology.aliases(self.services).items()}
            self.cache["topology"] = topology.merge(self.ctx.topology, edges, ext, alias)
        topo: dict[str, list[str]] = self.cache["topology"]
        return topo

    def signal_frames(self, signal: str) -> list[tuple[str, Resolved, pd.DataFrame, list[str]]]:
        """Range results answering `signal`: one query per dialect in use, with the services it covers."""
        key = f"signal:{signal}"
        if key not in self.cache:
            out = []
            for q, r, svcs in self.discovery().query_all(signal):
                out.append((q, r, self.range(q), svcs))
            self.cache[key] = out
        frames: list[tuple[str, Resolved, pd.DataFrame, list[str]]] = self.cache[key]
        return frames

    def signal(self, signal: str, agg: str = "sum") -> dict[str, pd.Series]:
        """One time series per service for a catalogue signal (services without it are absent)."""
        out: dict[str, pd.Series] = {}
        for _, r, df, svcs in self.signal_frames(signal):
            for svc, s in self.per_service(df, agg, label=r.label, only=svcs).items():
                out.setdefault(svc, s)
        return out

    def signal_query(self, signal: str, service: str | None = None) -> str:
        """The query(ies) behind a signal, for evidence (one service's, or every dialect's)."""
        d = self.discovery()
        if service is not None:
            r = d.resolved(service, signal)
            return r.query() if r is not None else ""
        return "\n".join(q for q, _, _ in d.query_all(signal))

    def has_metric(self, *patterns: str) -> list[str]:
        """Known metric names matching any regex in `patterns` (all if discovery is unavailable)."""
        names = self.metric_names()
        return sorted(n for n in names if any(re.fullmatch(p, n) for p in patterns))

    # -- shaping -------------------------------------------------------------------------------
    def service_of(self, labels: Mapping[str, Any]) -> str | None:
        """The service a series belongs to, from its workload labels."""
        return service_of(labels, self.services)

    def per_service(self, df: pd.DataFrame, agg: str = "sum", label: str = "",
                    only: Sequence[str] | None = None) -> dict[str, pd.Series]:
        """Group a long frame's series by service into one time series each.

        `label` names the label that carries the service in this dialect (tried first); `only`
        keeps just those services (the ones this dialect answers for).
        """
        if df.empty:
            return {}
        label_cols = [c for c in df.columns if c not in METRIC_FRAME_FIXED]
        if not label_cols:
            return {}
        allowed = set(only) if only is not None else None
        # one service lookup per distinct series, not per row (frames hold series x steps rows)
        gid = df.groupby(label_cols, sort=False, dropna=False).ngroup().to_numpy()
        firsts = pd.Series(np.arange(len(df))).groupby(gid).first()
        keys = df[label_cols].iloc[firsts.to_numpy()].astype(str)
        svc_of_group: dict[int, str | None] = {}
        for g, row in zip(firsts.index, keys.itertuples(index=False)):
            labels = dict(zip(label_cols, row))
            svc = map_service(labels.get(label, ""), self.services) if label else None
            svc = svc or self.service_of(labels)
            svc_of_group[int(g)] = svc if allowed is None or svc in allowed else None
        d = df.assign(_svc=pd.Series(gid, index=df.index).map(svc_of_group)).dropna(subset=["_svc"])
        out = {}
        for name, g in d.groupby("_svc"):
            s = g.groupby("timestamp")["value"].agg(agg)
            s.index = pd.to_datetime(s.index, utc=True)
            out[str(name)] = s.sort_index()
        return out


def service_of(labels: Mapping[str, Any], services: Sequence[str]) -> str | None:
    """Map workload labels to one of `services` (exact labels first, then pod/instance names)."""
    known = set(services)
    for k in EXACT_LABELS:
        v = str(labels.get(k, "") or "")
        if v in known:
            return v
    for k in FUZZY_LABELS:
        v = str(labels.get(k, "") or "")
        if not v:
            continue
        host = re.sub(r"^[a-z]+://", "", v).split(":")[0].split("/")[0]
        first = host.split(".")[0]
        if first in known:
            return first
        best = max((s for s in known if first.startswith(s + "-")), key=len, default=None)
        if best:
            return best
    return None


def baseline_end(ctx: InvestigationContext) -> pd.Timestamp:
    """Where the baseline window stops: before the first alert, or mid-window without alerts."""
    start, end = to_utc(ctx.window_start), to_utc(ctx.window_end)
    mid = start + (end - start) * 0.5
    fired = []
    for a in ctx.alerts or []:
        t = a.get("starts_at") or a.get("startsAt")
        if t:
            try:
                fired.append(to_utc(t))
            except (ValueError, TypeError):
                continue
    if not fired:
        return mid
    # a fault starts a few minutes before its alert fires (rate windows, `for:` clauses)
    cut = min(fired) - pd.Timedelta("15min")
    lo = start + (end - start) * 0.25
    return max(lo, min(cut, mid))


def strength(a: Anomaly | None, full: float = 12.0) -> float:
    """Map a robust z score to 0..1 (4 sigma ~ 0.33, `full` sigma and beyond = 1)."""
    if a is None or not np.isfinite(a.score) or a.score <= 0:
        return 0.0
    return float(min(a.score / full, 1.0))


def fmt(x: float) -> float:
    """Round a number for evidence (3 significant figures)."""
    if x is None or not np.isfinite(x):
        return float(x) if x is not None else float("nan")
    return float(f"{x:.3g}")


def anomaly_evidence(svc: str, what: str, q: str, a: Anomaly, unit: str = "") -> Evidence:
    """Evidence text for an anomaly: baseline, incident level, peak, onset, robust z."""
    onset = f", from {iso(a.onset)}" if a.onset is not None else ""
    return Evidence(
        summary=f"{svc}: {what} {fmt(a.baseline)}{unit} -> {fmt(a.level)}{unit} (peak {fmt(a.peak)}{unit}, "
                f"z={fmt(a.score)}){onset}",
        source="promql", query=q,
        value={"baseline": fmt(a.baseline), "level": fmt(a.level), "peak": fmt(a.peak), "z": fmt(a.score),
               "onset": iso(a.onset) if a.onset is not None else None})


def scored(series: Mapping[str, pd.Series], cut: pd.Timestamp, direction: str = "up", **kw: Any
           ) -> dict[str, Anomaly]:
    """score_anomaly for each service's series (services with too little data are skipped)."""
    out = {}
    for svc, s in series.items():
        a = score_anomaly(s, cut, direction, **kw)  # type: ignore[arg-type]
        if a is not None:
            out[svc] = a
    return out


def first(items: Iterable[pd.Timestamp | None]) -> pd.Timestamp | None:
    """The earliest non-null time."""
    ts = [t for t in items if t is not None]
    return min(ts) if ts else None
