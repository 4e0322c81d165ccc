"""Small systems whose services export foreign metric dialects, for catalogue and investigator tests.

Each service is described by what a user would see (requests/s, error ratio, p95 latency over
time) and the dialect its exporter speaks; `build` writes the series that exporter would expose
(Micrometer's `http_server_requests_seconds_count{status}`, Istio's `istio_requests_total
{destination_workload,response_code}`, a CloudWatch-style `latency{statistic}` ...) into a replay
source, so the investigator reads them through real PromQL. No scenario module is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.agent.base import InvestigationContext
from incidentbook.telemetry.bundle import iso, labels_key, write_bundle
from incidentbook.telemetry.replay import ReplaySource
from incidentbook.telemetry.sources import Telemetry

START = pd.Timestamp("2026-11-20T10:00:00Z")
STEP_S = 30
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Curve = Callable[[np.ndarray], np.ndarray]  # minutes since start -> values


def flat(v: float) -> Curve:
    return lambda m: np.full(m.shape, float(v))


def step(before: float, after: float, at_min: float) -> Curve:
    """`before` until `at_min`, then `after` (a fault that starts at once)."""
    return lambda m: np.where(m >= at_min, float(after), float(before))


def ramp(start: float, per_min: float, floor: float = 0.0) -> Curve:
    """A straight line from `start` (e.g. free disk share falling through the whole window)."""
    return lambda m: np.maximum(start + per_min * m, floor)


@dataclass
class Svc:
    """One service: its dialect and what its RED signals do over time."""

    dialect: str
    rps: Curve = field(default_factory=lambda: flat(20))
    err: Curve = field(default_factory=lambda: flat(0.002))
    p95: Curve = field(default_factory=lambda: flat(0.08))
    extras: dict[str, Any] = field(default_factory=dict)  # pool / disk / cache / cpu / probe


class _Writer:
    def __init__(self, minutes: np.ndarray, rng: np.random.Generator) -> None:
        self.m = minutes
        self.ts = START + pd.to_timedelta(minutes, unit="min")
        self.rng = rng
        self.rows: list[pd.DataFrame] = []

    def gauge(self, metric: str, labels: Mapping[str, str], values: np.ndarray) -> None:
        self.rows.append(pd.DataFrame({"timestamp": self.ts, "metric": metric, "labels": labels_key(labels),
                                       "value": np.asarray(values, dtype=float)}))

    def counter(self, metric: str, labels: Mapping[str, str], per_s: np.ndarray,
                noise: np.ndarray | None = None) -> None:
        noise = self.rng.normal(1.0, 0.03, per_s.shape) if noise is None else noise
        self.gauge(metric, labels, np.cumsum(np.maximum(per_s * noise, 0) * STEP_S))

    def histogram(self, base: str, labels: Mapping[str, str], per_s: np.ndarray, p95: np.ndarray,
                  scale: float = 1.0, count: bool = True) -> None:
        mean = np.maximum(p95 / 3.0, 1e-6)  # exponential latencies: p95 = 3 x mean
        noise = self.rng.normal(1.0, 0.03, per_s.shape)  # one request stream: every bucket moves together
        for le in BUCKETS:
            self.counter(f"{base}_bucket", {**labels, "le": _le(le * scale)}, per_s * (1 - np.exp(-le / mean)), noise)
        self.counter(f"{base}_bucket", {**labels, "le": "+Inf"}, per_s, noise)
        if count:
            self.counter(f"{base}_count", labels, per_s, noise)
            self.counter(f"{base}_sum", labels, per_s * mean * scale, noise)


def _le(v: float) -> str:
    return f"{v:g}"


def _red(w: _Writer, name: str, s: Svc, callers: list[str]) -> None:
    m = w.m
    rps, err, p95 = s.rps(m), np.clip(s.err(m), 0, 1), s.p95(m)
    ok, bad = rps * (1 - err), rps * err
    d = s.dialect
    if d == "prometheus":
        w.counter("http_requests_total", {"service": name, "code": "200"}, ok)
        w.counter("http_requests_total", {"service": name, "code": "500"}, bad)
        w.histogram("http_request_duration_seconds", {"service": name}, rps, p95)
    elif d == "fastapi":
        w.counter("http_requests_total", {"job": name, "handler": "/v1/run", "status": "2xx"}, ok)
        w.counter("http_requests_total", {"job": name, "handler": "/v1/run", "status": "5xx"}, bad)
        w.histogram("http_request_duration_seconds", {"job": name, "handler": "/v1/run"}, rps, p95)
    elif d == "micrometer":  # no histogram published: only _count and _sum
        for status, v in (("200", ok), ("503", bad)):
            lab = {"application": name, "status": status, "uri": "/api/login", "outcome": "SUCCESS"}
            w.counter("http_server_requests_seconds_count", lab, v)
            w.counter("http_server_requests_seconds_sum", lab, v * p95 / 3)
    elif d == "otel":
        for code, v in (("200", ok), ("500", bad)):
            lab = {"job": name, "http_response_status_code": code, "http_request_method": "GET"}
            w.histogram("http_server_request_duration_seconds", lab, v, p95)
    elif d == "istio":
        src = callers or ["unknown"]
        for c in src:
            for code, v in (("200", ok), ("503", bad)):
                lab = {"destination_workload": name, "source_workload": c, "response_code": code,
                       "reporter": "destination"}
                w.counter("istio_requests_total", lab, v / len(src))
            w.histogram("istio_request_duration_milliseconds",
                        {"destination_workload": name, "source_workload": c, "reporter": "destination"},
                        rps / len(src), p95, scale=1000, count=False)
    elif d == "grpc":
        for code, v in (("OK", ok), ("Unavailable", bad)):
            w.counter("grpc_server_handled_total", {"service": name, "grpc_code": code,
                                                    "grpc_service": "api.v1.Api", "grpc_method": "Get"}, v)
        w.histogram("grpc_server_handling_seconds", {"service": name, "grpc_service": "api.v1.Api"}, rps, p95)
    elif d == "envoy":
        w.counter("envoy_http_downstream_rq_total", {"service": name}, rps)
        for cls, v in (("2", ok), ("5", bad)):
            w.counter("envoy_http_downstream_rq_xx", {"service": name, "envoy_response_code_class": cls}, v)
        w.histogram("envoy_http_downstream_rq_time", {"service": name}, rps, p95, scale=1000)
    elif d == "cloudwatch":
        for stat, f in (("Average", 0.4), ("p50", 0.3), ("p90", 0.8), ("p95", 1.0), ("p99", 1.6)):
            w.gauge("latency", {"service": name, "statistic": stat}, p95 * f)
        w.gauge("requests", {"service": name, "statistic": "Sum"}, rps * 60)
        w.gauge("availability", {"service": name, "statistic": "Average"}, 100 * (1 - err))
    elif d == "none":  # scraped, but nothing the catalogue can read
        w.gauge("up", {"job": name}, np.ones(m.shape))
    else:
        raise ValueError(f"unknown dialect {d!r}")


def _extras(w: _Writer, name: str, s: Svc) -> None:
    m = w.m
    ex = s.extras
    if "pool" in ex:
        kind, used, mx = ex["pool"]
        u = used(m)
        if kind == "hikari":
            w.gauge("hikaricp_connections_active", {"application": name, "pool": "HikariPool-1"}, u)
            w.gauge("hikaricp_connections_max", {"application": name, "pool": "HikariPool-1"}, np.full(m.shape, mx))
            w.gauge("hikaricp_connections_pending", {"application": name, "pool": "HikariPool-1"},
                    np.maximum(u - mx + 1, 0) * 4)
        elif kind == "go_sql":
            w.gauge("go_sql_stats_connections_in_use", {"service": name, "db_name": "main"}, u)
            w.gauge("go_sql_stats_connections_max_open", {"service": name, "db_name": "main"}, np.full(m.shape, mx))
            w.counter("go_sql_stats_connections_waited_for", {"service": name, "db_name": "main"},
                      np.maximum(u - mx + 1, 0) * 3)
    if "disk" in ex:  # node_exporter filesystem, free share curve
        free = ex["disk"](m)
        size = 100e9
        lab = {"service": name, "mountpoint": "/data", "device": "/dev/nvme1n1", "fstype": "ext4"}
        w.gauge("node_filesystem_avail_bytes", lab, free * size)
        w.gauge("node_filesystem_size_bytes", lab, np.full(m.shape, size))
    if "cache" in ex:  # memcached get hits / misses
        hit = ex["cache"](m)
        lookups = s.rps(m) * 5
        w.counter("memcached_commands_total", {"service": name, "command": "get", "status": "hit"}, lookups * hit)
        w.counter("memcached_commands_total", {"service": name, "command": "get", "status": "miss"},
                  lookups * (1 - hit))
    if "cpu" in ex:  # cAdvisor usage and throttling per pod
        cores, throttled = ex["cpu"]
        lab = {"namespace": "prod", "pod": f"{name}-6d8f9-abcde", "container": "app"}
        w.counter("container_cpu_usage_seconds_total", lab, cores(m))
        w.counter("container_cpu_cfs_periods_total", lab, np.full(m.shape, 10.0))
        w.counter("container_cpu_cfs_throttled_periods_total", lab, 10.0 * throttled(m))


def build(services: Mapping[str, Svc], topology: Mapping[str, list[str]] | None = None,
          duration_min: int = 120, onset_min: float = 70, seed: int = 1,
          extra: Callable[[_Writer], None] | None = None, bundle_dir: Any = None,
          changes: list[dict[str, Any]] | None = None, alerted: str | None = None) -> InvestigationContext:
    """An investigation context over a replayed system (alert fires 5 minutes after `onset_min`).

    With `bundle_dir` the system is also written as a bundle there (and read back from it).
    """
    topo = {k: list(v) for k, v in (topology or {}).items()}
    minutes = np.arange(0, duration_min + 0.01, STEP_S / 60)
    w = _Writer(minutes, np.random.default_rng(seed))
    for name, s in services.items():
        callers = [c for c, deps in topo.items() if name in deps]
        _red(w, name, s, callers)
        _extras(w, name, s)
    if extra is not None:
        extra(w)
    frame = pd.concat(w.rows, ignore_index=True)
    end = START + pd.Timedelta(minutes=duration_min)
    if bundle_dir is not None:
        write_bundle(bundle_dir, {"window": {"start": START, "end": end}, "services": list(services),
                                  "topology": topo}, frame, changes=changes or [])
        tel = Telemetry.from_bundle(bundle_dir)
    else:
        tel = Telemetry([ReplaySource.from_frame(frame, window=(START, end))])
    alert_at = START + pd.Timedelta(minutes=onset_min + 5)
    first = alerted or next(iter(services))
    return InvestigationContext(
        incident_id="INC-DIALECTS", telemetry=tel, window_start=iso(START), window_end=iso(end),
        alerts=[{"labels": {"alertname": "HighErrorRate", "service": first}, "annotations": {},
                 "starts_at": iso(alert_at)}],
        services=list(services), topology=topo)
