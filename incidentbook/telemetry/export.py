"""Freeze an incident window into a telemetry bundle (`incidentbook bundle export`).

Default query set, for services `S = a|b|…` (regex-escaped):

- metrics: every series whose `service` or `job` label is one of the services, as the range
  queries `{service=~"S"}` and `{job=~"S"}` at a fixed step (`step_s`, default 15 s; raised
  automatically so no series exceeds Prometheus's 11,000 points), series deduplicated;
- logs: `{service=~"S"}` (newest `max_log_lines` lines of the window);
- Kubernetes events of `namespace` (all namespaces when None);
- changes (rollouts and change feeds) and planned events overlapping the window.

Log lines, event messages, change descriptions, planned events and the incident's title pass
through `redact` (default: a fresh `incidentbook.redact.Redactor`, which replaces secrets, emails
and IPs with pseudonyms) before they are written. A part whose source is
missing or fails is recorded in the manifest's `gaps` (part -> reason) rather than failing the
whole export, so a bundle is still made when, say, Loki is down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from incidentbook.errors import BadInput, IncidentbookError
from incidentbook.redact import default_redact
from incidentbook.telemetry.base import METRIC_FRAME_FIXED, TimeLike
from incidentbook.telemetry.bundle import (
    DEFAULT_MAX_BYTES,
    METRIC_COLUMNS,
    iso,
    labels_key,
    to_utc,
    write_bundle,
)
from incidentbook.telemetry.prometheus import auto_step
from incidentbook.telemetry.sources import Telemetry

DEFAULT_STEP_S = 15.0
DEFAULT_MAX_LOG_LINES = 50_000

def default_queries(services: Sequence[str]) -> tuple[list[str], list[str]]:
    """The default (PromQL, LogQL) selectors for `services`."""
    # re.escape writes `kv\-cache`; inside a quoted PromQL/LogQL string the backslash itself must
    # be escaped, or the parser rejects `\-` (Loki and the replay engine both do).
    alt = "|".join(re.escape(s) for s in services).replace("\\", "\\\\")
    return ([f'{{service=~"{alt}"}}', f'{{job=~"{alt}"}}'], [f'{{service=~"{alt}"}}'])


def metrics_to_bundle_frame(long: pd.DataFrame) -> pd.DataFrame:
    """A metrics long frame (`timestamp, <labels…>, value`) -> bundle columns `timestamp, metric, labels, value`."""
    if long.empty:
        return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ms, UTC]"), "metric": [],
                             "labels": [], "value": pd.Series([], dtype="float64")})
    label_cols = [c for c in long.columns if c not in METRIC_FRAME_FIXED and c != "__name__"]
    if label_cols:
        series = long[label_cols].drop_duplicates()
        keys = [labels_key({k: v for k, v in zip(label_cols, row) if isinstance(v, str) and v != ""})
                for row in series.itertuples(index=False, name=None)]
        key_of = dict(zip(series.itertuples(index=False, name=None), keys))
        labels = [key_of[row] for row in long[label_cols].itertuples(index=False, name=None)]
    else:
        labels = ["{}"] * len(long)
    metric = long["__name__"].astype(str) if "__name__" in long.columns else pd.Series("", index=long.index)
    return pd.DataFrame({"timestamp": long["timestamp"].to_numpy(), "metric": metric.to_numpy(),
                         "labels": labels, "value": long["value"].to_numpy()})[METRIC_COLUMNS]


_VERSION_TEXT = re.compile(r"v?\d{1,4}\.\d{1,4}(\.\d{1,6})?([-+][0-9A-Za-z.-]{1,40})?")


def prometheus_build(telemetry: Telemetry) -> dict[str, str] | None:
    """The Prometheus version behind the metrics source, for replay to follow its semantics.

    Asked of a live Prometheus at /api/v1/status/buildinfo; a replayed bundle passes on the
    version it recorded. None when the source does not tell (or answers something that is not
    a version). Stale markers cannot be kept: the query API never returns them.
    """
    try:
        src = telemetry._pick("metrics")
    except IncidentbookError:
        return None
    version: Any = None
    ask = getattr(src, "_request", None)
    if callable(ask):
        try:
            data = ask("/api/v1/status/buildinfo", {}, "")
        except IncidentbookError:
            return None
        version = data.get("version") if isinstance(data, dict) else None
    else:
        version = getattr(src, "prometheus_version", None)
    if not isinstance(version, str) or not _VERSION_TEXT.fullmatch(version):
        return None
    return {"version": version}


def _frame_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if df is None or df.empty else df.to_dict("records")


def export_bundle(telemetry: Telemetry, out: str | Path, window_start: TimeLike, window_end: TimeLike,
                  services: Sequence[str], namespace: str | None = None,
                  topology: Mapping[str, Sequence[str]] | None = None,
                  redact: Callable[[str], str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES, *,
                  step_s: float = DEFAULT_STEP_S, metric_queries: Sequence[str] | None = None,
                  log_queries: Sequence[str] | None = None, max_log_lines: int = DEFAULT_MAX_LOG_LINES,
                  extra_manifest: Mapping[str, Any] | None = None) -> Path:
    """Pull the window's telemetry for `services` from `telemetry` and write a bundle at `out`.

    `redact` maps each log line to its redacted form (default: `incidentbook.redact.default_redact()`). `metric_queries`
    / `log_queries` replace the default query set. Returns the bundle directory.
    """
    start, end = to_utc(window_start), to_utc(window_end)
    if end <= start:
        raise BadInput(f"export window ends ({iso(end)}) before it starts ({iso(start)}); swap them")
    services = [s for s in services if s]
    if not services and (metric_queries is None or log_queries is None):
        raise BadInput("export needs at least one service (or explicit metric and log queries)")
    dm, dl = default_queries(services) if services else ([], [])
    metric_queries = list(metric_queries if metric_queries is not None else dm)
    log_queries = list(log_queries if log_queries is not None else dl)
    redact = redact or default_redact()
    gaps: dict[str, str] = {}
    span = (end - start).total_seconds()
    step = max(float(step_s), auto_step(0, span, min_step=step_s))

    frames = []
    for q in metric_queries:
        res = telemetry.safe_query_range(q, start, end, step)
        if res.status == "error":
            gaps[f"metrics {q}"] = res.error
        elif res.ok and res.data is not None:
            frames.append(metrics_to_bundle_frame(res.data))
    metrics = (pd.concat(frames, ignore_index=True).drop_duplicates(["metric", "labels", "timestamp"])
               if frames else metrics_to_bundle_frame(pd.DataFrame()))

    logs: list[dict[str, Any]] = []
    seen: set[tuple[Any, str, str]] = set()
    for q in log_queries:
        res = telemetry.safe_query_logs(q, start, end, limit=max_log_lines, direction="backward")
        if res.status == "error":
            gaps[f"logs {q}"] = res.error
            continue
        if not res.ok or res.data is None:
            continue
        df = res.data
        label_cols = [c for c in df.columns if c not in ("timestamp", "line")]
        for row in df.itertuples(index=False, name=None):
            rec = dict(zip(df.columns, row))
            labels = {c: str(rec[c]) for c in label_cols if isinstance(rec[c], str) and rec[c] != ""}
            key = (rec["timestamp"], json.dumps(labels, sort_keys=True), rec["line"])
            if key in seen:
                continue
            seen.add(key)
            logs.append({"timestamp": iso_ns(rec["timestamp"]), "labels": labels, "line": redact(str(rec["line"]))})
    logs.sort(key=lambda r: r["timestamp"])

    events: list[dict[str, Any]] = []
    if telemetry.has("events"):
        res = telemetry.safe_events(start, end, namespace)
        if res.status == "error":
            gaps["events"] = res.error
        else:
            events = _frame_rows(res.data)
    else:
        gaps["events"] = "no events source configured"
    part: dict[str, list[dict[str, Any]]] = {}
    for what in ("changes", "context"):
        res = telemetry.run(what, start, end)
        if res.status == "error":
            gaps[what] = res.error
        part[what] = _frame_rows(res.data) if res.ok else []
    changes = [c for c in part["changes"] if not c.get("service") or c["service"] in services] if services else part["changes"]

    manifest: dict[str, Any] = {
        "window": {"start": start, "end": end},
        "services": list(services),
        "topology": {k: list(v) for k, v in (topology or {}).items()},
        "namespace": namespace,
        "source": {"origin": telemetry.origin, "sources": sorted(telemetry.sources),
                   "metric_queries": metric_queries, "log_queries": log_queries, "step_s": step},
        "gaps": gaps,
        "ground_truth": None,
        **({"prometheus": build} if (build := prometheus_build(telemetry)) else {}),
        **dict(extra_manifest or {}),
    }
    manifest.update(_redact_strings(dict(extra_manifest or {}), redact))
    return write_bundle(out, manifest, metrics, logs=logs, events=_redact_strings(events, redact),
                        changes=_redact_strings(changes, redact),
                        context=_redact_strings(part["context"], redact), max_bytes=max_bytes)


def _redact_strings(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` (rows of JSON-like data) with every string value passed through `redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_strings(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_strings(v, redact) for k, v in value.items()}
    return value


def iso_ns(value: Any) -> str:
    """ISO 8601 UTC keeping sub-millisecond digits (log order within a millisecond survives)."""
    ts = to_utc(value)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}{ts.nanosecond:03d}Z"


INCIDENT_LOOKBACK = pd.Timedelta(hours=1)
INCIDENT_LOOKAHEAD = pd.Timedelta(minutes=30)


def export_incident_bundle(cfg: Any, store: Any, incident_id: str, out: str | Path,
                           redact: Callable[[str], str] | None = None,
                           max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Export an incident's window (`incidentbook bundle export ID OUT`) and note it on its timeline.

    The window runs from an hour before the first alert to 30 minutes after the last one (or to
    when the incident closed, or now). An incident opened from a replayed bundle is exported from
    that bundle (keeping its window, topology and ground truth); otherwise from the configured
    sources. Services are the incident's `service` plus every alert's `service` label.
    """
    incident = store.get_incident(incident_id)
    alerts = store.alerts(incident_id)
    services = sorted({s for s in [incident.service, *(a.labels.get("service", "") for a in alerts)] if s})
    extra: dict[str, Any] = {"incident": {"id": incident.id, "title": incident.title,
                                          "alertname": incident.alertname, "severity": incident.severity}}
    topology: dict[str, list[str]] = {}
    if incident.bundle:
        telemetry = Telemetry.from_bundle(incident.bundle)
        src = telemetry.bundle
        start, end = src.window
        services = sorted(set(services) | set(src.services))
        topology = src.topology
        extra["ground_truth"] = src.manifest.get("ground_truth")
    else:
        telemetry = Telemetry.from_config(cfg)
        starts = [to_utc(a.starts_at) for a in alerts] or [to_utc(incident.created)]
        start = min(starts) - INCIDENT_LOOKBACK
        # A closed incident: up to its close. An open one: up to now (what is known so far).
        stop = to_utc(incident.closed_at) if incident.closed_at else pd.Timestamp.now(tz="UTC")
        end = max(stop, max(starts) + INCIDENT_LOOKAHEAD) if incident.closed_at else stop
    if not services:
        raise BadInput(f"incident {incident_id} names no service (no `service` label on its alerts); "
                       f"call export_bundle with the services to include")
    path = export_bundle(telemetry, out, start, end, services, namespace=incident.namespace or None,
                         topology=topology, redact=redact, max_bytes=max_bytes, extra_manifest=extra)
    store.add_event(incident_id, "bundle_exported", f"telemetry bundle exported to {path}",
                    data={"path": str(path), "services": services})
    return path
