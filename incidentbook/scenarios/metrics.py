"""Render a simulation as Prometheus series, named as the real exporters name them.

- Application (client libraries): `http_requests_total{method,route,code}`,
  `http_request_duration_seconds_{bucket,sum,count}`, `db_pool_connections_{in_use,max}`,
  `db_pool_wait_seconds_total`, `db_query_duration_seconds_*`, `worker_jobs_processed_total`.
- cAdvisor: `container_cpu_usage_seconds_total`, `container_cpu_cfs_{periods,throttled_periods}_total`,
  `container_memory_working_set_bytes`.
- kube-state-metrics: `kube_pod_container_status_restarts_total`,
  `kube_pod_container_status_last_terminated_reason`, `kube_pod_container_resource_limits`.
- redis_exporter, postgres_exporter, rabbitmq, blackbox_exporter, and `up`.
- kubelet: `kubelet_volume_stats_{available,capacity}_bytes` of the stateful services' volumes.

Every series carries `namespace`, `service` and (except blackbox probes) `pod`; a container restart
keeps the pod name and resets the pod's counters; a rollout brings new pod names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from incidentbook.scenarios.simulate import SIGMA, STEP_S, Pod, Sim, phi
from incidentbook.scenarios.topology import HTTP_KINDS
from incidentbook.telemetry.bundle import labels_key

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CODES = ("200", "404", "500", "503", "504")

Series = tuple[str, dict[str, str], np.ndarray]


def _le(x: float) -> str:
    return "+Inf" if np.isinf(x) else f"{x:g}"


def _reset_points(p: Pod) -> list[int]:
    return sorted(i + d for i, d in p.restarts)


def _counter(inc: np.ndarray, offset: np.ndarray, resets: list[int], scraped: np.ndarray) -> np.ndarray:
    """Cumulative counters [n, T] from increments, restarting from zero at each reset index."""
    c = np.cumsum(inc, axis=1) + offset[:, None]
    for r in resets:
        if 0 < r < c.shape[1]:
            c[:, r:] -= c[:, r - 1:r]
    c = np.where(scraped[None, :], c, np.nan)
    return c


class _Out:
    def __init__(self) -> None:
        self.series: list[Series] = []

    def add(self, metric: str, labels: dict[str, str], values: np.ndarray) -> None:
        self.series.append((metric, labels, np.asarray(values, dtype=float)))


def render_series(sim: Sim) -> list[Series]:
    """Every metric series of the simulation, values NaN where the target was not scraped."""
    rng = np.random.default_rng([int(sim.t[0]) % 2**31, len(sim.t), 31])
    T = sim.T
    sysm = sim.system
    ns = sysm.namespace
    out = _Out()
    dt = float(STEP_S)
    for name, svc in sysm.services.items():
        pods = sim.pods[name]
        serving = np.array([p.serving(T) for p in pods])
        alive = np.array([p.alive(T) for p in pods])
        jitter = rng.uniform(0.92, 1.08, size=(len(pods), 1))
        w = serving * jitter
        w = w / np.maximum(w.sum(axis=0, keepdims=True), 1e-9)
        uptime = rng.uniform(2 * 3600, 5 * 86400, len(pods)) * (np.array([p.start for p in pods]) == 0)
        load = sim.load[name]
        for k, p in enumerate(pods):
            base = {"namespace": ns, "service": name, "pod": p.name}
            resets = _reset_points(p)
            scr = serving[k]
            out.add("up", base, np.where(alive[k], serving[k].astype(float), np.nan))
            # --- HTTP RED metrics
            if svc.kind in HTTP_KINDS:
                rl = sim.route_load[name]
                cf = sim.codes[name]
                codes = list(CODES) + (["429"] if svc.kind == "gateway" else []) + \
                    (["401"] if any("login" in r.path for r in svc.routes) else [])
                rates, labels = [], []
                for ri, r in enumerate(svc.routes):
                    err = sum(cf[c][ri] for c in codes if c != "200")
                    for c in codes:
                        frac = np.clip(1 - err, 0, 1) if c == "200" else cf[c][ri]
                        rates.append(rl[ri] * frac * w[k])
                        labels.append({**base, "method": r.method, "route": r.path, "code": c})
                R = np.array(rates)
                inc = rng.poisson(np.clip(R, 0, None) * dt).astype(float)
                inc[:, ~scr] = 0
                offset = np.floor(R[:, :1].ravel() * uptime[k])
                C = _counter(inc, offset, resets, scr)
                for lab, v in zip(labels, C):
                    out.add("http_requests_total", lab, v)
                n = inc.sum(axis=0)
                comps = sim.comps[name]
                wsum = sum(cw for cw, _ in comps)
                mean = sum(cw * cm for cw, cm in comps) / np.maximum(wsum, 1e-9) * np.exp(SIGMA ** 2 / 2)
                n0 = float(offset.sum())
                fr0 = None
                for le in HTTP_BUCKETS + (np.inf,):
                    if np.isinf(le):
                        F = np.ones(T)
                    else:
                        F = sum(cw * phi((np.log(le) - np.log(cm)) / SIGMA) for cw, cm in comps) / np.maximum(wsum, 1e-9)
                    fr0 = F[0]
                    raw = _counter((n * F)[None, :], np.array([n0 * fr0]), resets, scr)[0]
                    out.add("http_request_duration_seconds_bucket", {**base, "le": _le(le)}, np.floor(raw))
                out.add("http_request_duration_seconds_count", base,
                        np.floor(_counter(n[None, :], np.array([n0]), resets, scr)[0]))
                out.add("http_request_duration_seconds_sum", base,
                        _counter((n * mean)[None, :], np.array([n0 * float(mean[0])]), resets, scr)[0])
            # --- container metrics (cAdvisor, kube-state-metrics)
            cbase = {**base, "container": name}
            demand = sim.cpu_demand[name] * rng.lognormal(0, 0.05, T)
            used = np.minimum(demand, svc.cpu_limit) * scr
            periods = 10 * np.clip(demand / svc.cpu_limit * 1.5 + 0.2, 0, 1) * scr
            thr = periods * sim.throttle[name]
            cpu_off = np.array([float(used[0]) * uptime[k]])
            out.add("container_cpu_usage_seconds_total", cbase, _counter((used * dt)[None, :], cpu_off, resets, scr)[0])
            cc = _counter(np.floor(np.array([periods * dt, thr * dt])), np.floor(np.array([periods[0], thr[0]]) * uptime[k]),
                          resets, scr)
            out.add("container_cpu_cfs_periods_total", cbase, cc[0])
            out.add("container_cpu_cfs_throttled_periods_total", cbase, cc[1])
            mem = p.mem if p.mem is not None else np.full(T, svc.mem_base_mb * 1024 * 1024)
            out.add("container_memory_working_set_bytes", cbase, np.where(scr, np.round(mem), np.nan))
            live = np.where(alive[k], 1.0, np.nan)
            out.add("kube_pod_container_resource_limits", {**cbase, "resource": "memory", "unit": "byte"},
                    live * svc.mem_limit_mb * 1024 * 1024)
            out.add("kube_pod_container_resource_limits", {**cbase, "resource": "cpu", "unit": "core"}, live * svc.cpu_limit)
            restarts = np.full(T, float(p.restarts_before))
            for i, _d in p.restarts:
                restarts[min(i + 1, T - 1):] += 1
            out.add("kube_pod_container_status_restarts_total", cbase, restarts * live)
            if p.oom:
                first = np.full(T, np.nan)
                first[p.oom[0]:] = 1.0
                out.add("kube_pod_container_status_last_terminated_reason", {**cbase, "reason": "OOMKilled"},
                        first * live)
            # --- database client pool
            if svc.db_pool_max and name in sim.db_load:
                in_use = np.clip(np.round(sim.pool_in_use.get(name, np.zeros(T)) * rng.lognormal(0, 0.08, T)),
                                 0, svc.db_pool_max)
                out.add("db_pool_connections_in_use", base, np.where(scr, in_use, np.nan))
                out.add("db_pool_connections_max", base, np.where(scr, float(svc.db_pool_max), np.nan))
                out.add("db_pool_wait_seconds_total", base,
                        _counter((sim.pool_wait.get(name, np.zeros(T)) * dt)[None, :], np.zeros(1), resets, scr)[0])
                q = rng.poisson(np.clip(sim.db_load[name] * w[k], 0, None) * dt).astype(float) * scr
                q0 = float(sim.db_load[name][0] * w[k][0] * uptime[k])
                for le in DB_BUCKETS + (np.inf,):
                    F = np.ones(T) if np.isinf(le) else phi((np.log(le) - np.log(sim.db_lat)) / 0.6)
                    raw = _counter((q * F)[None, :], np.array([q0 * F[0]]), resets, scr)[0]
                    out.add("db_query_duration_seconds_bucket", {**base, "le": _le(le)}, np.floor(raw))
                out.add("db_query_duration_seconds_count", base, np.floor(_counter(q[None, :], np.array([q0]), resets, scr)[0]))
                out.add("db_query_duration_seconds_sum", base,
                        _counter((q * sim.db_lat * np.exp(0.18))[None, :], np.array([q0 * sim.db_lat[0]]), resets, scr)[0])
            if svc.kind == "worker":
                jobs = rng.poisson(np.clip(load * w[k], 0, None) * dt).astype(float) * scr
                fail = rng.binomial(jobs.astype(int), 0.002).astype(float)
                C = _counter(np.array([jobs - fail, fail]), np.floor(np.array([load[0] * w[k][0], load[0] * w[k][0] * 0.002]) * uptime[k]), resets, scr)
                out.add("worker_jobs_processed_total", {**base, "result": "success"}, C[0])
                out.add("worker_jobs_processed_total", {**base, "result": "failure"}, C[1])
        # --- exporters of stateful services (one pod each)
        p0 = pods[0]
        base0 = {"namespace": ns, "service": name, "pod": p0.name}
        scr0 = serving[0]
        up0 = uptime[0] if uptime[0] > 0 else 3600.0
        if svc.kind == "cache":
            hr = sim.mods.hit_ratio.get(name, np.full(T, 0.93))
            hr = np.clip(hr + rng.normal(0, 0.006, T), 0, 1)
            look = rng.poisson(np.clip(load, 0, None) * dt).astype(float) * scr0
            hits = np.floor(look * hr)
            evict_rate = 0.4 + (1 - hr) * 350 * (hr < 0.8)
            ev = rng.poisson(evict_rate * dt).astype(float) * scr0
            resets = _reset_points(p0)
            C = _counter(np.array([hits, look - hits, ev, look * 1.05]),
                         np.floor(np.array([load[0] * hr[0], load[0] * (1 - hr[0]), 0.4, load[0]]) * up0), resets, scr0)
            for metric, v in zip(("redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_evicted_keys_total",
                                  "redis_commands_processed_total"), C):
                out.add(metric, base0, v)
            broken = hr < 0.8
            maxmem = np.where(broken, 64.0, 4096.0) * 1024 * 1024
            used = np.where(broken, 0.99 * maxmem, 2150 * 1024 * 1024 * rng.lognormal(0, 0.01, T))
            out.add("redis_memory_max_bytes", base0, np.where(scr0, maxmem, np.nan))
            out.add("redis_memory_used_bytes", base0, np.where(scr0, used, np.nan))
            clients = sum(len(sim.pods[c]) for c in sysm.callers(name)) * 8
            out.add("redis_connected_clients", base0, np.where(scr0, clients + rng.integers(-2, 3, T), np.nan))
        elif svc.kind == "db":
            total_q = sum(sim.db_load.values())
            xact = rng.poisson(np.clip(total_q * 0.7, 0, None) * dt).astype(float) * scr0
            rb = rng.poisson(0.05 * dt, T).astype(float) * scr0
            resets = _reset_points(p0)
            C = _counter(np.array([xact, rb]), np.floor(np.array([total_q[0] * 0.7, 0.05]) * up0), resets, scr0)
            out.add("pg_stat_database_xact_commit", {**base0, "datname": "shop"}, C[0])
            out.add("pg_stat_database_xact_rollback", {**base0, "datname": "shop"}, C[1])
            pools = {c: float(sysm.services[c].db_pool_max * len(sim.pods[c])) for c in sim.db_load}
            active = sum(np.minimum(sim.db_load[c] * sim.db_lat * 1.3, pools[c]) for c in sim.db_load)
            leaked = sum(sim.mods.pool_leak.get(c, np.zeros(T)) * sum(q.serving(T) for q in sim.pods[c]) for c in sim.db_load)
            idle = np.maximum(sum(pools.values()) * 0.6 - active, 2)
            for state, v in (("active", active), ("idle", idle), ("idle in transaction", leaked + 0.3)):
                out.add("pg_stat_activity_count", {**base0, "datname": "shop", "state": state},
                        np.where(scr0, np.round(v * rng.lognormal(0, 0.05, T)), np.nan))
            out.add("pg_settings_max_connections", base0, np.where(scr0, 300.0, np.nan))
        elif svc.kind == "queue":
            depth = np.round(sim.queue_depth * rng.lognormal(0, 0.03, T))
            out.add("rabbitmq_queue_messages_ready", {**base0, "queue": "orders"}, np.where(scr0, depth, np.nan))
            pub = rng.poisson(np.clip(sim.queue_in, 0, None) * dt).astype(float) * scr0
            C = _counter(pub[None, :], np.floor(np.array([sim.queue_in[0] * up0])), _reset_points(p0), scr0)
            out.add("rabbitmq_queue_messages_published_total", {**base0, "queue": "orders"}, C[0])
            workers = sysm.of_kind("worker")
            consumers = sum(np.sum([q.serving(T) for q in sim.pods[w_]], axis=0) for w_ in workers) if workers else np.zeros(T)
            out.add("rabbitmq_queue_consumers", {**base0, "queue": "orders"}, np.where(scr0, consumers * 4.0, np.nan))
    # --- blackbox probes of HTTPS endpoints
    expiry_target = sim.fault.target if sim.fault.kind == "cert_expiry" else None
    for name, svc in sysm.services.items():
        if svc.kind not in HTTP_KINDS:
            continue
        lab = {"namespace": ns, "service": name, "instance": f"https://{name}.{ns}.svc:8443/healthz"}
        if name == expiry_target:
            exp = float(sim.notes["expiry"])
        else:
            exp = float(sim.t[0]) + float(rng.uniform(21, 80)) * 86400
        exp = float(np.floor(exp))
        out.add("probe_ssl_earliest_cert_expiry", lab, np.full(T, exp))
        any_up = np.sum([p.serving(T) for p in sim.pods[name]], axis=0) > 0
        ok = any_up & (sim.t < exp)
        out.add("probe_success", lab, ok.astype(float))
    _render_volumes(sim, out)
    return out.series


GIB = 1024.0 ** 3


def _render_volumes(sim: Sim, out: _Out) -> None:
    """kubelet volume stats of the stateful services' data volumes (their own random stream)."""
    rng = np.random.default_rng([int(sim.t[0]) % 2**31, len(sim.t), 47])
    T, ns, f = sim.T, sim.system.namespace, sim.fault
    disk = sim.notes.get("disk") or {}
    for name, svc in sim.system.services.items():
        if svc.kind not in ("db", "queue", "cache"):
            continue
        p0 = sim.pods[name][0]
        cap = float(rng.choice([20, 50, 100])) * GIB
        free = cap * float(rng.uniform(0.4, 0.7))
        # logs and table growth: a slow, steady fill with small wobbles (vacuum, log rotation)
        steady = cap * float(rng.uniform(0.0005, 0.002)) / 3600 * STEP_S * np.arange(T)
        wobble = np.cumsum(rng.normal(0, cap * 2e-5, T))
        avail = free - steady + wobble
        if name == f.target and f.kind == "disk_full" and disk:
            cap = float(disk["capacity_gib"]) * GIB
            avail = cap * float(disk["free_share"]) - steady + wobble
            o, full = f.onset, int(disk["full_at"])
            per_step = avail[o] / max(full - o, 1)
            avail = avail - per_step * np.clip(np.arange(T) - o, 0, None)
        avail = np.clip(np.floor(avail / 4096) * 4096, cap * 2e-5, cap)
        live = np.where(p0.alive(T), 1.0, np.nan)
        lab = {"namespace": ns, "service": name, "persistentvolumeclaim": f"data-{p0.name}"}
        out.add("kubelet_volume_stats_capacity_bytes", lab, live * cap)
        out.add("kubelet_volume_stats_available_bytes", lab, live * avail)


def series_frame(series: list[Series], t: np.ndarray) -> pd.DataFrame:
    """The bundle's long metrics frame (timestamp, metric, labels, value) from rendered series."""
    ts_ms = (t * 1000).astype("int64")
    names = sorted({m for m, _, _ in series})
    name_code = {m: i for i, m in enumerate(names)}
    label_keys = [labels_key(lab) for _, lab, _ in series]
    uniq = list(dict.fromkeys(label_keys))
    ucode = {k: i for i, k in enumerate(uniq)}
    mcodes, lcodes, times, values = [], [], [], []
    for k, (metric, _lab, v) in enumerate(series):
        m = ~np.isnan(v)
        n = int(m.sum())
        if not n:
            continue
        mcodes.append(np.full(n, name_code[metric], dtype=np.int32))
        lcodes.append(np.full(n, ucode[label_keys[k]], dtype=np.int32))
        times.append(ts_ms[m])
        values.append(v[m])
    if not values:
        return pd.DataFrame({"timestamp": pd.to_datetime([], utc=True), "metric": [], "labels": [], "value": []})
    return pd.DataFrame({
        "timestamp": pd.to_datetime(np.concatenate(times), unit="ms", utc=True),
        "metric": pd.Categorical.from_codes(np.concatenate(mcodes), categories=names),
        "labels": pd.Categorical.from_codes(np.concatenate(lcodes), categories=pd.Index(uniq, dtype=object)),
        "value": np.concatenate(values),
    })
