"""Each rules check on a small synthetic source: the right finding, and none on healthy data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from incidentbook.agent.base import InvestigationContext
from incidentbook.agent.checks import cache, certs, http, logs, saturation
from incidentbook.agent.checks.common import Probe, baseline_end, service_of
from incidentbook.agent.checks.context import planned_events
from incidentbook.telemetry.bundle import labels_key, write_bundle
from incidentbook.telemetry.sources import Telemetry

T0 = pd.Timestamp("2026-11-23T10:00:00Z")
N = 480  # two hours at 15 s
ONSET = 300
SERVICES = ["web", "api", "cache", "db"]
TOPO = {"web": ["api"], "api": ["cache", "db"], "cache": [], "db": []}


def _counter(rate: np.ndarray) -> np.ndarray:
    return np.cumsum(rate * 15.0)


class Bundle:
    """Builds a tiny bundle: a few services with counters and gauges shaped by the test."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, str], np.ndarray]] = []
        self.logs: list[dict] = []
        self.context: list[dict] = []
        self.t = pd.date_range(T0, periods=N, freq="15s")

    def add(self, metric: str, labels: dict[str, str], values: np.ndarray) -> None:
        self.rows.append((metric, labels, np.asarray(values, dtype=float)))

    def http(self, svc: str, rps: np.ndarray, err: np.ndarray, codes: dict[str, np.ndarray] | None = None) -> None:
        lab = {"namespace": "ns", "service": svc, "pod": f"{svc}-7d9f-abcde"}
        self.add("http_requests_total", {**lab, "code": "200"}, _counter(rps * (1 - err)))
        self.add("http_requests_total", {**lab, "code": "500"}, _counter(rps * err))
        for code, r in (codes or {}).items():
            self.add("http_requests_total", {**lab, "code": code}, _counter(r))

    def write(self, path) -> InvestigationContext:
        frames = [pd.DataFrame({"timestamp": self.t, "metric": m, "labels": labels_key(lab), "value": v})
                  for m, lab, v in self.rows]
        write_bundle(path, {"window": {"start": self.t[0], "end": self.t[-1]}, "services": SERVICES,
                            "topology": TOPO}, pd.concat(frames), logs=self.logs, context=self.context)
        return InvestigationContext("t", [], self.t[0].isoformat(), self.t[-1].isoformat(),
                                    Telemetry.from_bundle(path), SERVICES, TOPO)


def flat(level: float, sd: float = 0.0, seed: int = 0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, N) * (sd > 0)


def step(before: float, after: float, at: int = ONSET) -> np.ndarray:
    return np.where(np.arange(N) >= at, after, before)


def cut_of(ctx: InvestigationContext) -> pd.Timestamp:
    return baseline_end(ctx)


def test_red_check_finds_error_and_rate_changes_only_where_they_happen(tmp_path):
    b = Bundle()
    b.http("api", flat(50, 1, 1), step(0.001, 0.2))
    b.http("web", flat(40, 1, 2), flat(0.001))
    ctx = b.write(tmp_path / "b")
    p = Probe(ctx)
    red = http.check_red(p, cut_of(ctx))
    errs = {f.service: f for f in red.findings if f.signal == "5xx ratio"}
    assert set(errs) == {"api"}
    onset = errs["api"].onset
    assert abs((onset - b.t[ONSET]).total_seconds()) <= 150  # within the 2m rate window
    # the evidence shows the catalogue's query for this service, in its dialect
    assert errs["api"].evidence.query == p.discovery().resolved("api", "error_ratio").query()
    assert 'http_requests_total{service="api", code=~"5.."}' in errs["api"].evidence.query
    assert errs["api"].evidence.value["level"] == pytest.approx(0.2, abs=0.03)


def test_throttling_check_needs_a_real_rise(tmp_path):
    b = Bundle()
    for svc, thr in (("api", step(0.0, 0.5)), ("web", flat(0.01))):
        lab = {"namespace": "ns", "service": svc, "pod": f"{svc}-1", "container": svc}
        b.add("container_cpu_cfs_periods_total", lab, _counter(flat(10.0)))
        b.add("container_cpu_cfs_throttled_periods_total", lab, _counter(10.0 * thr))
    ctx = b.write(tmp_path / "b")
    f = saturation.check_throttling(Probe(ctx), cut_of(ctx))
    assert [x.service for x in f] == ["api"] and f[0].kind == "cpu_throttling"
    assert f[0].evidence.value["level"] == pytest.approx(0.5, abs=0.05)


def test_memory_check_sees_growth_to_the_limit_and_oom(tmp_path):
    b = Bundle()
    limit = 512 * 2**20
    lab = {"namespace": "ns", "service": "api", "pod": "api-1", "container": "api"}
    mem = np.where(np.arange(N) < ONSET, 0.5, 0.5 + (np.arange(N) - ONSET) / (N - ONSET) * 0.49) * limit
    b.add("container_memory_working_set_bytes", lab, mem)
    b.add("kube_pod_container_resource_limits", {**lab, "resource": "memory"}, flat(limit))
    b.add("kube_pod_container_status_restarts_total", lab, step(0, 1, ONSET + 100))
    b.add("kube_pod_container_status_last_terminated_reason", {**lab, "reason": "OOMKilled"}, step(0, 1, ONSET + 100))
    wlab = {"namespace": "ns", "service": "web", "pod": "web-1", "container": "web"}
    b.add("container_memory_working_set_bytes", wlab, flat(0.3 * limit))
    b.add("kube_pod_container_resource_limits", {**wlab, "resource": "memory"}, flat(limit))
    ctx = b.write(tmp_path / "b")
    f = [x for x in saturation.check_memory(Probe(ctx), cut_of(ctx), pd.DataFrame()) if x.kind == "memory_leak"]
    assert [x.service for x in f] == ["api"]
    assert f[0].evidence.value["oom"] >= 1 and f[0].evidence.value["peak_fraction_of_limit"] > 0.9


def test_pool_check_flags_pool_at_max(tmp_path):
    b = Bundle()
    for svc, used in (("api", step(2, 10)), ("web", flat(2))):
        lab = {"namespace": "ns", "service": svc, "pod": f"{svc}-1"}
        b.add("db_pool_connections_in_use", lab, used)
        b.add("db_pool_connections_max", lab, flat(10))
    ctx = b.write(tmp_path / "b")
    f = saturation.check_pools(Probe(ctx), cut_of(ctx))
    assert {x.service for x in f} == {"api"} and f[0].kind == "db_pool_exhaustion"


def test_cache_check_finds_hit_ratio_collapse(tmp_path):
    b = Bundle()
    lab = {"namespace": "ns", "service": "cache", "pod": "cache-0"}
    hr = step(0.93, 0.1)
    b.add("redis_keyspace_hits_total", lab, _counter(1000 * hr))
    b.add("redis_keyspace_misses_total", lab, _counter(1000 * (1 - hr)))
    ctx = b.write(tmp_path / "b")
    f = cache.check_cache(Probe(ctx), cut_of(ctx))
    assert [x.service for x in f] == ["cache"] and f[0].kind == "cache_failure"
    assert f[0].evidence.value["baseline"] == pytest.approx(0.93, abs=0.01)


def test_cert_check_reports_only_expired_or_expiring(tmp_path):
    b = Bundle()
    end = b.t[-1].timestamp()
    b.add("probe_ssl_earliest_cert_expiry", {"service": "api", "instance": "https://api.ns.svc"},
          flat(b.t[ONSET].timestamp()))
    b.add("probe_ssl_earliest_cert_expiry", {"service": "web", "instance": "https://web.ns.svc"},
          flat(end + 40 * 86400))
    ctx = b.write(tmp_path / "b")
    f = certs.check_certs(Probe(ctx), cut_of(ctx))
    assert [x.service for x in f] == ["api"] and f[0].evidence.value["hours_left"] < 0


def test_log_check_names_new_error_template_and_concentrated_clients(tmp_path):
    b = Bundle()
    b.http("api", flat(10), flat(0.0))
    rng = np.random.default_rng(0)
    for i in range(N):
        ts = b.t[i].isoformat()
        b.logs.append({"timestamp": ts, "labels": {"service": "api", "pod": "api-1"},
                       "line": json.dumps({"msg": "request done", "status": 200, "client_ip": f"10.0.{i % 50}.1"})})
        if i >= ONSET:
            ip = ["6.6.6.6", "7.7.7.7"][i % 2] if rng.random() < 0.9 else f"10.1.{i % 40}.2"
            b.logs.append({"timestamp": ts, "labels": {"service": "api", "pod": "api-1"},
                           "line": json.dumps({"msg": "login failed: invalid password", "status": 401,
                                               "level": "warn", "client_ip": ip})})
    ctx = b.write(tmp_path / "b")
    f = logs.check_logs(Probe(ctx), cut_of(ctx))
    kinds = {x.signal: x for x in f}
    assert "errors concentrated on few clients" in kinds
    top = dict(kinds["errors concentrated on few clients"].evidence.value["top"])
    assert "6.6.6.6" in top and "7.7.7.7" in top
    assert any(x.kind == "abuse" and "template" in x.evidence.summary for x in f)


def test_planned_events_overlapping_the_window():
    rows = pd.DataFrame([{"start": T0 - pd.Timedelta("1h"), "end": T0 + pd.Timedelta("5h"), "kind": "marketing",
                          "title": "launch", "services": [], "details": {}},
                         {"start": T0 + pd.Timedelta("9h"), "end": T0 + pd.Timedelta("10h"), "kind": "maintenance",
                          "title": "later", "services": [], "details": {}}])
    ev = planned_events(rows, T0, T0 + pd.Timedelta("2h"))
    assert [e["title"] for e in ev] == ["launch"]


@pytest.mark.parametrize("labels,expected", [
    ({"service": "api"}, "api"),
    ({"pod": "api-7d9f8-x2x4z"}, "api"),
    ({"instance": "https://db.ns.svc:8443/healthz"}, "db"),
    ({"container": "cache", "pod": "zzz"}, "cache"),
    ({"pod": "other-1"}, None),
])
def test_service_of_maps_workload_labels(labels, expected):
    assert service_of(labels, SERVICES + ["api-gateway"]) == expected
