"""Saturation: CPU throttling, memory near its limit, OOM kills and restarts, DB pools, queues."""

from __future__ import annotations

import numpy as np
import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, fmt, scored, strength
from incidentbook.agent.checks.http import RATE
from incidentbook.analysis.anomaly import Anomaly, trend_slope
from incidentbook.telemetry.bundle import iso

WL = "namespace, pod, container"
THROTTLE = (f'sum by ({WL}) (rate(container_cpu_cfs_throttled_periods_total[2m])) / '
            f'sum by ({WL}) (rate(container_cpu_cfs_periods_total[2m]))')
CPU = f'sum by ({WL}) (rate(container_cpu_usage_seconds_total[2m]))'
MEMORY = f'max by ({WL}) (container_memory_working_set_bytes)'
MEMORY_LIMIT = f'max by ({WL}) (kube_pod_container_resource_limits{{resource="memory"}})'
RESTARTS = f'max by ({WL}) (kube_pod_container_status_restarts_total)'
OOM = f'max by ({WL}) (kube_pod_container_status_last_terminated_reason{{reason="OOMKilled"}})'


def check_throttling(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """CPU throttling ratio per service (worst pod) against the baseline."""
    out = []
    for svc, a in scored(p.per_service(p.range(THROTTLE), agg="max"), cut, "up", abs_floor=0.02,
                         rel_floor=0.2).items():
        if a.onset is not None and a.level >= 0.1 and a.level - a.baseline >= 0.08:
            out.append(Finding(svc, "CPU throttling", max(strength(a), min((a.level - a.baseline) * 2, 1.0)), a.onset,
                               anomaly_evidence(svc, "throttled CFS periods ratio", THROTTLE, a),
                               kind="cpu_throttling", detail={"level": a.level}))
    return out


def cpu_per_request(p: Probe, rate: dict[str, pd.Series], cut: pd.Timestamp) -> dict[str, float]:
    """How much CPU per request grew (incident / baseline) per service: >1.5 means costlier requests."""
    return {svc: a.ratio for svc, a in _cost_anomalies(p, rate, cut).items()}


def _cost_anomalies(p: Probe, rate: dict[str, pd.Series], cut: pd.Timestamp) -> dict[str, Anomaly]:
    if p.cache.get("cost") is None:
        cpu = p.per_service(p.range(CPU))
        per = {}
        for svc, c in cpu.items():
            r = rate.get(svc)
            if r is None or r.empty:
                continue
            s = (c / r.reindex(c.index, method="nearest")).replace([np.inf, -np.inf], np.nan).dropna()
            per[svc] = s
        p.cache["cost"] = scored(per, cut, "up", rel_floor=0.1)
    return p.cache["cost"]


def check_cpu_cost(p: Probe, rate: dict[str, pd.Series], cut: pd.Timestamp) -> list[Finding]:
    """CPU seconds per request jumping (per request, so a traffic rise alone cannot do it): contention."""
    out = []
    for svc, a in _cost_anomalies(p, rate, cut).items():
        if a.onset is not None and a.ratio >= 1.6:
            out.append(Finding(svc, "CPU per request", min(0.35 + (a.ratio - 1.6) * 0.4, 0.8), a.onset,
                               anomaly_evidence(svc, "CPU seconds per request", f"{CPU}\n / {RATE}", a),
                               kind="cpu_throttling", detail={"ratio": a.ratio}))
    return out


def check_memory(p: Probe, cut: pd.Timestamp, events: pd.DataFrame) -> list[Finding]:
    """Memory climbing towards the limit, OOM kills and restarts (a leak), per service."""
    out = []
    mem = p.range(MEMORY)
    lim = p.range(MEMORY_LIMIT)
    mem_svc = p.per_service(mem, agg="max")
    lim_svc = p.per_service(lim, agg="max")
    restarts = _counter_increase(p, p.range(RESTARTS), cut)
    oom_metric = {s: float(v.max()) for s, v in p.per_service(p.range(OOM), agg="max").items()}
    oom_events: dict[str, int] = {}
    if not events.empty and "reason" in events.columns:
        ev = events[events["reason"].astype(str).str.contains("OOM", case=False) |
                    events["message"].astype(str).str.contains("OOMKilled", case=False)]
        for _, row in ev.iterrows():
            svc = p.service_of({"pod": row.get("name", "")})
            if svc:
                oom_events[svc] = oom_events.get(svc, 0) + int(row.get("count", 1) or 1)
    for svc in set(mem_svc) | set(restarts) | set(oom_events):
        m = mem_svc.get(svc)
        limit = float(lim_svc[svc].max()) if svc in lim_svc and len(lim_svc[svc]) else float("nan")
        inc = m[m.index >= cut] if m is not None else pd.Series(dtype=float)
        peak_frac = float(inc.max() / limit) if len(inc) and np.isfinite(limit) and limit > 0 else float("nan")
        slope = trend_slope(inc) / limit if len(inc) and np.isfinite(limit) and limit > 0 else 0.0
        n_restart = restarts.get(svc, (0.0, None))
        n_oom = oom_events.get(svc, 0) + (1 if oom_metric.get(svc, 0) > 0 else 0)
        score = 0.0
        ev_list = []
        if n_oom:
            score += 0.6
            ev_list.append(f"{n_oom} OOMKilled")
        if np.isfinite(peak_frac) and peak_frac >= 0.85:
            score += 0.25
            ev_list.append(f"working set peaked at {fmt(peak_frac * 100)}% of the limit")
        if slope > 0.3:  # > 30% of the limit per hour
            score += 0.15
            ev_list.append(f"growing {fmt(slope * 100)}% of the limit per hour")
        if n_restart[0] >= 1 and score > 0:
            score += 0.15
            ev_list.append(f"{int(n_restart[0])} container restarts")
        if score >= 0.4:
            onset = n_restart[1]
            out.append(Finding(svc, "memory / OOM", min(score, 1.0), onset,
                               Evidence(summary=f"{svc}: " + "; ".join(ev_list), source="promql",
                                        query=f"{MEMORY}\n{MEMORY_LIMIT}\n{RESTARTS}",
                                        value={"peak_fraction_of_limit": fmt(peak_frac), "oom": n_oom,
                                               "restarts": n_restart[0], "growth_per_hour": fmt(slope)}),
                               kind="memory_leak"))
    for svc, (n, t) in restarts.items():
        if n >= 1 and not any(f.service == svc for f in out):
            out.append(Finding(svc, "container restarts", min(0.2 + 0.1 * n, 0.6), t,
                               Evidence(summary=f"{svc}: {int(n)} container restarts in the incident window"
                                        + (f", first at {iso(t)}" if t is not None else ""),
                                        source="promql", query=RESTARTS, value={"restarts": n}),
                               detail={"restarts": n}))
    return out


def _counter_increase(p: Probe, df: pd.DataFrame, cut: pd.Timestamp) -> dict[str, tuple[float, pd.Timestamp | None]]:
    """Per service: restarts counted after `cut` and when the first one happened."""
    if df.empty:
        return {}
    label_cols = [c for c in df.columns if c not in ("timestamp", "value")]
    out: dict[str, tuple[float, pd.Timestamp | None]] = {}
    for key, g in df.groupby(label_cols) if label_cols else []:
        svc = p.service_of(dict(zip(label_cols, key if isinstance(key, tuple) else (key,))))
        if not svc:
            continue
        g = g.sort_values("timestamp")
        v = g["value"].to_numpy()
        ts = pd.to_datetime(g["timestamp"], utc=True).iloc[1:]
        d = np.diff(v)
        mask = (d > 0) & (ts >= cut).to_numpy()
        n = float(d[mask].sum())
        first_t = pd.Timestamp(ts[mask].iloc[0]) if mask.any() else None
        prev = out.get(svc, (0.0, None))
        t = min([x for x in (prev[1], first_t) if x is not None], default=None)
        out[svc] = (prev[0] + n, t)
    return out


def check_pools(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Connection pools near their maximum, and time spent waiting for a connection."""
    out = []
    used_names = p.has_metric(r".*pool.*(in_use|active|used|busy).*")
    max_names = p.has_metric(r".*pool.*(max|size|limit|capacity).*")
    wait_names = p.has_metric(r".*pool.*wait.*")
    for used in used_names:
        mx = next((m for m in max_names if m.split("_")[0] == used.split("_")[0]), None)
        q = f"sum by (service) ({used})" + (f" / sum by (service) ({mx})" if mx else "")
        for svc, a in scored(p.per_service(p.range(q), agg="max"), cut, "up", abs_floor=0.02, rel_floor=0.1).items():
            full = a.peak >= 0.9 if mx else a.ratio >= 2
            if a.onset is not None and full:
                out.append(Finding(svc, "connection pool saturation", max(strength(a), 0.6), a.onset,
                                   anomaly_evidence(svc, "pool in use" + (" / max" if mx else ""), q, a),
                                   kind="db_pool_exhaustion"))
    for wait in wait_names:
        rate_fn = "rate" if wait.endswith(("_total", "_sum", "_count")) else ""
        q = f"sum by (service) ({rate_fn}({wait}[2m]))" if rate_fn else f"sum by (service) ({wait})"
        for svc, a in scored(p.per_service(p.range(q)), cut, "up", abs_floor=0.01, rel_floor=0.2).items():
            if a.onset is not None and a.score >= 6 and a.level > 0.05:
                out.append(Finding(svc, "connection pool wait", strength(a), a.onset,
                                   anomaly_evidence(svc, "pool wait", q, a), kind="db_pool_exhaustion"))
    return out
