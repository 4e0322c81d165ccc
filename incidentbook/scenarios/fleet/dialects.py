"""Exporter dialects: how each kind of service reports the same flow as Prometheus series.

Metric and label names follow the exporters' documentation: ingress-nginx, Envoy, Spring
Boot/Micrometer (+ HikariCP, JVM), prometheus-fastapi-instrumentator, OpenTelemetry semantic
conventions as exported to Prometheus, go-grpc-prometheus, Go `database/sql` stats
(`go_sql_stats_*`), vLLM, text-embeddings-inference, postgres_exporter, pgbouncer_exporter,
redis_exporter, kafka_exporter, cAdvisor, kubelet volume stats and the blackbox exporter.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from incidentbook.scenarios.fleet.system import STEP_S, FleetSystem, Flow

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2)
    t = 1 / (1 + 0.3275911 * z)
    y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-z * z)
    return 0.5 * (1 + np.sign(x) * y)


@dataclass
class Out:
    """Collects series: (metric, labels, values over the steps)."""

    rng: np.random.Generator
    series: list[tuple[str, dict[str, str], np.ndarray]] = field(default_factory=list)

    def gauge(self, metric: str, labels: dict[str, Any], values: np.ndarray | float, T: int) -> None:
        v = np.broadcast_to(np.asarray(values, dtype=float), (T,)).copy()
        self.series.append((metric, {k: str(x) for k, x in labels.items()}, v))

    def counter(self, metric: str, labels: dict[str, Any], rate: np.ndarray, poisson: bool = True) -> None:
        """A monotone counter from a per-second rate (counts per step drawn Poisson)."""
        per_step = np.clip(np.asarray(rate, dtype=float), 0, None) * STEP_S
        inc = self.rng.poisson(per_step).astype(float) if poisson else per_step
        start = float(self.rng.integers(0, 10_000)) if poisson else 0.0
        self.series.append((metric, {k: str(x) for k, x in labels.items()}, start + np.cumsum(inc)))

    def histogram(self, base: str, labels: dict[str, Any], rate: np.ndarray, median: np.ndarray,
                  buckets: tuple[float, ...], sigma: float = 0.55, scale: float = 1.0) -> None:
        """`_bucket`/`_sum`/`_count` of a lognormal latency with `median` (seconds) x `scale`."""
        n = np.clip(rate, 0, None) * STEP_S
        m = np.maximum(np.asarray(median, dtype=float) * scale, 1e-9)
        cum = np.cumsum(n)
        for le in buckets:
            share = _phi((np.log(le) - np.log(m)) / sigma)
            self.gauge(f"{base}_bucket", {**labels, "le": _le(le)}, np.cumsum(n * share), len(n))
        self.gauge(f"{base}_bucket", {**labels, "le": "+Inf"}, cum, len(n))
        self.gauge(f"{base}_count", labels, cum, len(n))
        self.gauge(f"{base}_sum", labels, np.cumsum(n * m * math.exp(sigma ** 2 / 2)), len(n))


def _le(x: float) -> str:
    return f"{float(x)}" if not float(x).is_integer() or x < 1000 else f"{float(x):.1f}"


def _split(rps: np.ndarray, pods: int, rng: np.random.Generator) -> list[np.ndarray]:
    w = rng.dirichlet(np.full(pods, 30.0))
    return [rps * wi for wi in w]


def pod_names(system: FleetSystem, rng: np.random.Generator) -> dict[str, list[str]]:
    """Kubernetes-style pod names per service (StatefulSets for data stores)."""
    out: dict[str, list[str]] = {}
    for n, node in system.nodes.items():
        if node.role == "vendor":
            continue
        if node.role in ("db", "pooler", "cache", "broker"):
            out[n] = [f"{n}-{i}" for i in range(node.pods)]
        else:
            rs = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), 10))
            out[n] = [f"{n}-{rs}-{''.join(rng.choice(list('bcdfghjklmnpqrstvwxz2456789'), 5))}" for _ in range(node.pods)]
    return out


def _target(system: FleetSystem, svc: str, pod: str, port: int = 8080) -> dict[str, str]:
    """Labels Prometheus adds to a scraped pod (kube-prometheus ServiceMonitor defaults)."""
    return {"job": svc, "service": svc, "namespace": system.namespace, "pod": pod, "instance": f"10.42.{zlib.crc32(pod.encode()) % 250}.{zlib.crc32(pod[::-1].encode()) % 250}:{port}",
            "endpoint": "http-metrics"}


def render(system: FleetSystem, flow: Flow, state: dict[str, Any], t: np.ndarray, rng: np.random.Generator) -> list[tuple[str, dict[str, str], np.ndarray]]:
    """Every series the stack's exporters would have produced over the steps `t`."""
    T = len(t)
    out = Out(rng)
    pods = state["pods"]
    for n, node in system.nodes.items():
        if node.role == "vendor":
            continue
        fn = _RENDERERS.get(node.dialect)
        if fn:
            fn(out, system, flow, state, n, pods[n], T)
        _cadvisor(out, system, flow, state, n, pods[n], T)
    _blackbox(out, system, state, t)
    _volumes(out, system, state, T)
    return out.series


def _status_mix(err: np.ndarray, r429: np.ndarray, T: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Share of responses per HTTP status code."""
    e = np.clip(err, 0, 1)
    r4 = np.clip(r429, 0, 1)
    base4 = np.full(T, 0.006)
    ok = np.clip(1 - e - r4 - base4, 0, 1)
    return {"200": ok, "400": base4 * 0.6, "404": base4 * 0.4, "429": r4, "500": e * 0.55, "502": e * 0.15,
            "503": e * 0.2, "504": e * 0.1}


def _edge_nginx(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    host = state["host"]
    for c in node.calls:
        if not c.route:
            continue
        attempted = flow.attempted[(n, c.target)]
        e_route = _route_err(system, flow, n, c.target, state)
        mix = _status_mix(e_route, flow.r429.get(c.target, np.zeros(T)), T, out.rng)
        for pod, share in zip(pods, _split(attempted, len(pods), out.rng)):
            lab = {**_target(system, n, pod, 10254), "controller_class": "k8s.io/ingress-nginx", "controller_namespace": system.namespace,
                   "controller_pod": pod, "ingress": c.target, "exported_service": c.target, "host": host,
                   "method": "POST", "path": c.route}
            for code, frac in mix.items():
                out.counter("nginx_ingress_controller_requests", {**lab, "status": code}, share * frac)
            out.histogram("nginx_ingress_controller_request_duration_seconds",
                          {k: v for k, v in lab.items() if k != "method"}, share, state["route_lat"][c.target], SECONDS_BUCKETS)


def _route_err(system: FleetSystem, flow: Flow, n: str, target: str, state: dict[str, Any]) -> np.ndarray:
    refused = state["knobs"].refuse.get(target, np.zeros(len(flow.err[n])))
    gate = flow.gate
    e = refused + (1 - refused) * flow.err[target]
    return np.clip(gate + (1 - gate) * e, 0, 1)


def _edge_envoy(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    down_total = np.zeros(T)
    down_5xx = np.zeros(T)
    down_4xx = np.zeros(T)
    for c in node.calls:
        if not c.route:
            continue
        attempted = flow.attempted[(n, c.target)]
        e_route = _route_err(system, flow, n, c.target, state)
        refused = state["knobs"].refuse.get(c.target, np.zeros(T))
        upstream = flow.sent[(n, c.target)] * (1 - refused)  # refused requests never reach a cluster
        mix = _status_mix(flow.err[c.target], flow.r429.get(c.target, np.zeros(T)), T, out.rng)
        for pod, share in zip(pods, _split(upstream, len(pods), out.rng)):
            lab = {**_target(system, n, pod, 9901), "envoy_cluster_name": f"{system.namespace}_{c.target}_8080"}
            for code, frac in mix.items():
                out.counter("envoy_cluster_upstream_rq", {**lab, "envoy_response_code": code}, share * frac)
            for cls, codes in (("2", ("200",)), ("4", ("400", "404", "429")), ("5", ("500", "502", "503", "504"))):
                out.counter("envoy_cluster_upstream_rq_xx", {**lab, "envoy_response_code_class": cls},
                            share * sum(mix[k] for k in codes))
            out.histogram("envoy_cluster_upstream_rq_time", lab, share, flow.lat[c.target], MS_BUCKETS, scale=1000)
        down_total += attempted
        down_5xx += attempted * e_route
        down_4xx += attempted * (flow.r429.get(c.target, np.zeros(T)) + 0.006)
    for pod, w in zip(pods, out.rng.dirichlet(np.full(len(pods), 30.0))):
        lab = {**_target(system, n, pod, 9901), "envoy_http_conn_manager_prefix": "ingress_http"}
        out.counter("envoy_http_downstream_rq_xx", {**lab, "envoy_response_code_class": "2"}, w * (down_total - down_5xx - down_4xx))
        out.counter("envoy_http_downstream_rq_xx", {**lab, "envoy_response_code_class": "4"}, w * down_4xx)
        out.counter("envoy_http_downstream_rq_xx", {**lab, "envoy_response_code_class": "5"}, w * down_5xx)
        out.counter("envoy_http_downstream_rq_total", lab, w * down_total)
        out.histogram("envoy_http_downstream_rq_time", lab, w * down_total, flow.lat[n], MS_BUCKETS, scale=1000)


def _routes_split(node_routes: list[str], name: str) -> list[tuple[str, float]]:
    """Each route's share of a service's traffic (fixed per service name)."""
    if not node_routes:
        return []
    w = np.random.default_rng(zlib.crc32(name.encode())).dirichlet(np.full(len(node_routes), 4.0))
    return list(zip(node_routes, w))


def _micrometer(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    mix = _status_mix(flow.err[n], flow.r429[n], T, out.rng)
    exc = state.get("exceptions", {}).get(n, "ResponseStatusException")
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = {**_target(system, n, pod), "application": n}
        for uri, w in _routes_split(node.routes, n):
            for code, frac in mix.items():
                if code in ("400", "404") and uri != node.routes[0]:
                    continue
                outcome = "SUCCESS" if code == "200" else ("CLIENT_ERROR" if code < "500" else "SERVER_ERROR")
                lab = {**tl, "method": "POST", "uri": uri, "status": code, "outcome": outcome,
                       "exception": "none" if code < "500" else exc}
                out.counter("http_server_requests_seconds_count", lab, share * w * frac)
                out.counter("http_server_requests_seconds_sum", lab, share * w * frac * flow.lat[n] * 1.15, poisson=False)
            out.histogram("http_server_requests_seconds", {**tl, "method": "POST", "uri": uri, "status": "200", "outcome": "SUCCESS",
                                                            "exception": "none"}, share * w * mix["200"], flow.lat[n], SECONDS_BUCKETS)
        pool = node.extra.get("pool")
        if pool:
            mx = float(node.extra["hikari_max"])
            active = np.minimum(state["pool_in_use"][n] / len(pods), mx)
            pending = state["pool_pending"][n] / len(pods)
            pl = {**tl, "pool": pool}
            out.gauge("hikaricp_connections_active", pl, active, T)
            out.gauge("hikaricp_connections_idle", pl, np.clip(mx - active, 0, None), T)
            out.gauge("hikaricp_connections_pending", pl, pending, T)
            out.gauge("hikaricp_connections_max", pl, mx, T)
            out.gauge("hikaricp_connections_min", pl, 10.0, T)
            out.gauge("hikaricp_connections", pl, mx, T)
            out.counter("hikaricp_connections_timeout_total", pl, pending * 0.2)
            out.counter("hikaricp_connections_acquire_seconds_count", pl, share)
            out.counter("hikaricp_connections_acquire_seconds_sum", pl, share * (0.0004 + pending * 0.05), poisson=False)
        heap = 420e6 + 80e6 * np.sin(np.arange(T) / 11.0) ** 2
        out.gauge("jvm_memory_used_bytes", {**tl, "area": "heap", "id": "G1 Old Gen"}, heap, T)
        out.gauge("jvm_memory_max_bytes", {**tl, "area": "heap", "id": "G1 Old Gen"}, 1.5e9, T)
        out.gauge("jvm_threads_live_threads", tl, 60 + 4 * out.rng.standard_normal(T), T)
        out.counter("jvm_gc_pause_seconds_count", {**tl, "action": "end of minor GC", "cause": "G1 Evacuation Pause", "gc": "G1 Young Generation"}, 0.2 + share * 0.002)


def _fastapi(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    mix = _status_mix(flow.err[n], flow.r429[n], T, out.rng)
    groups = {"2xx": mix["200"], "4xx": mix["400"] + mix["404"] + mix["429"], "5xx": mix["500"] + mix["502"] + mix["503"] + mix["504"]}
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = _target(system, n, pod, 8000)
        for handler, w in _routes_split(node.routes, n):
            for code, frac in groups.items():
                out.counter("http_requests_total", {**tl, "handler": handler, "method": "POST", "status": code}, share * w * frac)
            out.histogram("http_request_duration_seconds", {**tl, "handler": handler, "method": "POST"}, share * w, flow.lat[n],
                          (0.1, 0.5, 1.0))  # the instrumentator's default coarse buckets
            out.histogram("http_request_duration_highr_seconds", tl, share * w, flow.lat[n], SECONDS_BUCKETS)
        _vendor_client(out, system, flow, state, n, tl, share / np.maximum(flow.rps[n], 1e-9), T)
        out.gauge("process_resident_memory_bytes", tl, 310e6 + 5e6 * out.rng.standard_normal(T), T)


def _otel(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    mix = _status_mix(flow.err[n], flow.r429[n], T, out.rng)
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = {**_target(system, n, pod, 9464), "service_name": n, "service_namespace": system.namespace}
        for route, w in _routes_split(node.routes, n):
            for code, frac in mix.items():
                if code in ("400", "404", "502"):
                    continue
                lab = {**tl, "http_request_method": "POST", "http_route": route, "http_response_status_code": code,
                       "url_scheme": "http", "network_protocol_version": "1.1"}
                out.histogram("http_server_request_duration_seconds", lab, share * w * frac, flow.lat[n], SECONDS_BUCKETS)
        _vendor_client(out, system, flow, state, n, tl, share / np.maximum(flow.rps[n], 1e-9), T)


def _vendor_client(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, tl: dict[str, str],
                   pod_share: np.ndarray, T: int) -> None:
    """OpenTelemetry HTTP client metrics of calls to the third-party API (it has no series of its own)."""
    v = system.vendor_host
    key = (n, v)
    if key not in flow.sent:
        return
    calls = flow.sent[key] * pod_share
    e = flow.err[v]
    for code, frac in (("200", 1 - e), ("503", e * 0.6), ("504", e * 0.4)):
        lab = {**tl, "http_request_method": "POST", "server_address": v, "server_port": "443", "http_response_status_code": code}
        if code == "504":
            lab = {**lab, "error_type": "timeout"}
        out.histogram("http_client_request_duration_seconds", lab, calls * frac, flow.lat[v], SECONDS_BUCKETS)


def _grpc(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    e = flow.err[n]
    svc = node.extra["service"]
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = _target(system, n, pod, 9090)
        for method, w in _routes_split(node.routes, n):
            base = {**tl, "grpc_service": svc, "grpc_method": method, "grpc_type": "unary"}
            out.counter("grpc_server_started_total", base, share * w)
            for code, frac in (("OK", 1 - e - 0.002), ("InvalidArgument", np.full(T, 0.002)), ("Unavailable", e * 0.5),
                               ("DeadlineExceeded", e * 0.4), ("Internal", e * 0.1)):
                out.counter("grpc_server_handled_total", {**base, "grpc_code": code}, share * w * frac)
            out.histogram("grpc_server_handling_seconds", base, share * w, flow.lat[n], SECONDS_BUCKETS)


def _gosql(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    mx = float(node.extra["max_open"])
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = _target(system, n, pod, 2112)
        if node.routes:  # the Go HTTP handlers (promhttp middleware, Prometheus client defaults)
            e = flow.err[n]
            for handler, w in _routes_split(node.routes, n):
                for code, frac in (("200", 1 - e), ("500", e * 0.7), ("503", e * 0.3)):
                    out.counter("http_requests_total", {**tl, "handler": handler, "method": "post", "code": code}, share * w * frac)
                out.histogram("http_request_duration_seconds", {**tl, "handler": handler, "method": "post"}, share * w, flow.lat[n],
                              SECONDS_BUCKETS)
        in_use = np.minimum(state["pool_in_use"][n] / len(pods), mx)
        waiting = state["pool_pending"][n] / len(pods)
        dl = {**tl, "db_name": node.extra["db_name"]}
        out.gauge("go_sql_stats_connections_max_open", dl, mx, T)
        out.gauge("go_sql_stats_connections_open", dl, np.minimum(in_use + 2, mx), T)
        out.gauge("go_sql_stats_connections_in_use", dl, in_use, T)
        out.gauge("go_sql_stats_connections_idle", dl, np.clip(np.minimum(in_use + 2, mx) - in_use, 0, None), T)
        out.counter("go_sql_stats_connections_waited_for", dl, waiting * 3)
        out.counter("go_sql_stats_connections_blocked_seconds", dl, waiting * 0.8, poisson=False)
        out.gauge("go_goroutines", tl, 40 + share * 0.3 + waiting * 4, T)


def _vllm(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    model = node.extra["model"]
    kv_name = state["kv_metric"]
    for _k, (pod, share) in enumerate(zip(pods, _split(flow.rps[n], len(pods), out.rng))):
        tl = {**_target(system, n, pod, 8000), "model_name": model, "engine": "0"}
        kv = np.clip(state["kv_usage"][n] + 0.02 * out.rng.standard_normal(T), 0, 1)
        out.gauge(kv_name, tl, kv, T)
        out.gauge("vllm:num_requests_running", tl, np.minimum(share * flow.lat[n], 64), T)
        out.gauge("vllm:num_requests_waiting", tl, state["kv_waiting"][n] / len(pods), T)
        out.counter("vllm:num_preemptions_total", tl, state["kv_preempt"][n] / len(pods))
        out.counter("vllm:prompt_tokens_total", tl, share * state["prompt_tokens"])
        out.counter("vllm:generation_tokens_total", tl, share * 180)
        out.counter("vllm:request_success_total", {**tl, "finished_reason": "stop"}, share * (1 - flow.err[n]) * 0.9)
        out.counter("vllm:request_success_total", {**tl, "finished_reason": "length"}, share * (1 - flow.err[n]) * 0.1)
        out.histogram("vllm:time_to_first_token_seconds", tl, share, state["ttft"][n], LLM_BUCKETS)
        out.histogram("vllm:e2e_request_latency_seconds", tl, share, flow.lat[n], LLM_BUCKETS)


def _tei(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    e = flow.err[n]
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        tl = _target(system, n, pod, 80)
        out.counter("te_request_count", {**tl, "method": "batch"}, share)
        out.counter("te_request_success", {**tl, "method": "batch"}, share * (1 - e))
        out.counter("te_request_failure", {**tl, "err": "overloaded"}, share * e)
        out.gauge("te_queue_size", tl, np.clip(share * flow.lat[n] * 0.5, 0, None), T)
        out.histogram("te_request_duration", tl, share, flow.lat[n], SECONDS_BUCKETS)


def _postgres(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    tl = _target(system, n, pods[0], 9187)
    db = n.replace("-", "_")
    out.gauge("pg_up", tl, state["pg_up"].get(n, np.ones(T)), T)
    out.gauge("pg_settings_max_connections", tl, float(node.extra["max_connections"]), T)
    out.gauge("pg_stat_database_numbackends", {**tl, "datname": db}, 20 + flow.rps[n] * 0.02 + 2 * out.rng.standard_normal(T), T)
    out.counter("pg_stat_database_xact_commit", {**tl, "datname": db}, flow.rps[n] * (1 - flow.err[n]))
    out.counter("pg_stat_database_xact_rollback", {**tl, "datname": db}, flow.rps[n] * flow.err[n] + 0.01)
    out.counter("pg_stat_database_deadlocks", {**tl, "datname": db}, np.full(T, 0.0005))


def _pgbouncer(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    tl = _target(system, n, pods[0], 9127)
    size = float(node.extra["pool_size"])
    active = np.minimum(flow.rps[n] * flow.lat[n] * 1.5 + 3, size)
    lab = {**tl, "database": "app", "user": "app"}
    out.gauge("pgbouncer_pools_server_active_connections", lab, active, T)
    out.gauge("pgbouncer_pools_server_idle_connections", lab, np.clip(size - active, 0, None), T)
    out.gauge("pgbouncer_pools_client_active_connections", lab, active + 5, T)
    out.gauge("pgbouncer_pools_client_waiting_connections", lab, np.clip(flow.rps[n] * flow.lat[n] * 1.5 + 3 - size, 0, None), T)
    out.counter("pgbouncer_stats_queries_pooled_total", {**tl, "database": "app"}, flow.rps[n])
    out.counter("pgbouncer_stats_client_wait_seconds_total", {**tl, "database": "app"}, flow.rps[n] * 0.0001, poisson=False)


def _redis(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    tl = _target(system, n, pods[0], 9121)
    out.gauge("redis_up", tl, 1.0, T)
    out.gauge("redis_connected_clients", tl, 40 + 3 * out.rng.standard_normal(T), T)
    out.counter("redis_commands_processed_total", tl, flow.rps[n])
    out.counter("redis_keyspace_hits_total", tl, flow.rps[n] * 0.94)
    out.counter("redis_keyspace_misses_total", tl, flow.rps[n] * 0.06)
    out.gauge("redis_memory_used_bytes", tl, 1.1e9 + 2e7 * out.rng.standard_normal(T), T)
    out.gauge("redis_memory_max_bytes", tl, 4e9, T)


def _kafka(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    tl = _target(system, n, pods[0], 9308)
    tl = {**tl, "job": "kafka-exporter"}
    for consumer, lag in state["lag"].items():
        node = system.nodes[consumer]
        for p in range(3):
            lab = {**tl, "consumergroup": node.extra["group"], "topic": node.extra["topic"], "partition": str(p)}
            out.gauge("kafka_consumergroup_lag", lab, np.clip(lag / 3 + 4 * out.rng.standard_normal(T), 0, None), T)
            out.counter("kafka_topic_partition_current_offset", {**tl, "topic": node.extra["topic"], "partition": str(p)},
                        state["produced"] / 3)
    out.gauge("kafka_brokers", tl, 3.0, T)


def _cadvisor(out: Out, system: FleetSystem, flow: Flow, state: dict[str, Any], n: str, pods: list[str], T: int) -> None:
    node = system.nodes[n]
    cost = {"inference": 0.004, "embedder": 0.002, "db": 0.0015}.get(node.role, 0.0008)
    base = {"job": "kubelet", "service": "kubelet", "metrics_path": "/metrics/cadvisor", "namespace": system.namespace}
    for pod, share in zip(pods, _split(flow.rps[n], len(pods), out.rng)):
        lab = {**base, "pod": pod, "container": n}
        cpu = 0.05 + share * cost * state["cpu_mult"].get(n, 1.0)
        out.counter("container_cpu_usage_seconds_total", lab, cpu, poisson=False)
        quota = 2.0
        periods = np.full(T, 10.0)
        throttled = periods * np.clip((cpu - 0.7 * quota) / quota, 0, 1)
        out.counter("container_cpu_cfs_periods_total", lab, periods, poisson=False)
        out.counter("container_cpu_cfs_throttled_periods_total", lab, throttled, poisson=False)
        out.gauge("container_memory_working_set_bytes", lab, 380e6 + 6e6 * out.rng.standard_normal(T), T)
        out.gauge("kube_pod_container_status_restarts_total", {"job": "kube-state-metrics", "namespace": system.namespace, "pod": pod,
                                                               "container": n}, 0.0, T)


def _blackbox(out: Out, system: FleetSystem, state: dict[str, Any], t: np.ndarray) -> None:
    T = len(t)
    for svc, url in system.probes.items():
        lab = {"job": "blackbox", "instance": url, "module": "http_2xx"}
        ok = state["probe_ok"].get(svc, np.ones(T))
        out.gauge("probe_success", lab, ok, T)
        out.gauge("probe_http_status_code", lab, np.where(ok > 0.5, 200, state["probe_code"].get(svc, 0)), T)
        out.gauge("probe_duration_seconds", lab, 0.04 + 0.005 * out.rng.standard_normal(T).clip(-3, 3), T)
        out.gauge("probe_ssl_earliest_cert_expiry", lab, state["cert_expiry"][svc], T)


def _volumes(out: Out, system: FleetSystem, state: dict[str, Any], T: int) -> None:
    for n, (cap, free) in state["volumes"].items():
        lab = {"job": "kubelet", "service": "kubelet", "metrics_path": "/metrics", "namespace": system.namespace,
               "persistentvolumeclaim": system.nodes[n].extra["pvc"]}
        out.gauge("kubelet_volume_stats_capacity_bytes", lab, cap, T)
        out.gauge("kubelet_volume_stats_available_bytes", lab, free, T)
        out.gauge("kubelet_volume_stats_used_bytes", lab, cap - free, T)
    for k in range(3):
        lab = {"job": "node-exporter", "instance": f"ip-10-0-{k}-17:9100", "device": "/dev/nvme0n1p1", "fstype": "xfs", "mountpoint": "/"}
        out.gauge("node_filesystem_avail_bytes", lab, 61e9 - 1e8 * k, T)
        out.gauge("node_filesystem_size_bytes", lab, 100e9, T)


_RENDERERS = {"nginx": _edge_nginx, "envoy": _edge_envoy, "micrometer": _micrometer, "fastapi": _fastapi, "otel": _otel,
              "grpc": _grpc, "gosql": _gosql, "vllm": _vllm, "tei": _tei, "postgres": _postgres, "pgbouncer": _pgbouncer,
              "redis": _redis, "kafka": _kafka}
