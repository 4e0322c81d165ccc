"""Saturation: CPU throttling, memory near its limit, OOM kills and restarts, DB pools, queues."""

from __future__ import annotations

import numpy as np
import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, fmt, scored, strength
from incidentbook.analysis.anomaly import Anomaly, trend_slope
from incidentbook.telemetry.bundle import iso
from incidentbook.telemetry.signals import map_service


def check_throttling(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """CPU throttling ratio per service (worst pod) against the baseline."""
    out = []
    for svc, a in scored(p.signal("cpu_throttling", agg="max"), cut, "up", abs_floor=0.02,
                         rel_floor=0.2).items():
        if a.onset is not None and a.level >= 0.1 and a.level - a.baseline >= 0.08:
            out.append(Finding(svc, "CPU throttling", max(strength(a), min((a.level - a.baseline) * 2, 1.0)), a.onset,
                               anomaly_evidence(svc, "throttled CFS periods ratio",
                                                p.signal_query("cpu_throttling", svc), a),
                               kind="cpu_throttling", detail={"level": a.level}))
    return out


def cpu_per_request(p: Probe, rate: dict[str, pd.Series], cut: pd.Timestamp) -> dict[str, float]:
    """How much CPU per request grew (incident / baseline) per service: >1.5 means costlier requests."""
    return {svc: a.ratio for svc, a in _cost_anomalies(p, rate, cut).items()}


def _cost_anomalies(p: Probe, rate: dict[str, pd.Series], cut: pd.Timestamp) -> dict[str, Anomaly]:
    if p.cache.get("cost") is None:
        cpu = p.signal("cpu")
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
    """CPU seconds per request jumping (per request, so a traffic rise alone cannot do it): contention.

    Only where the traffic held up: when requests collapse (a broken route in front, callers
    gone), the idle baseline CPU divided by almost no requests looks "costly" but is a
    consequence of the missing traffic, not a CPU problem.
    """
    out = []
    held = {svc for svc, a in scored(rate, cut, "down", rel_floor=0.08).items()
            if a.onset is None or a.ratio > 0.7}
    for svc, a in _cost_anomalies(p, rate, cut).items():
        if svc not in held:
            continue
        if a.onset is not None and a.ratio >= 1.6:
            out.append(Finding(svc, "CPU per request", min(0.35 + (a.ratio - 1.6) * 0.4, 0.8), a.onset,
                               anomaly_evidence(svc, "CPU seconds per request",
                                                f"{p.signal_query('cpu', svc)}\n / {p.signal_query('requests', svc)}",
                                                a),
                               kind="cpu_throttling", detail={"ratio": a.ratio}))
    return out


def check_memory(p: Probe, cut: pd.Timestamp, events: pd.DataFrame) -> list[Finding]:
    """Memory climbing towards the limit, OOM kills and restarts (a leak), per service."""
    out = []
    mem_svc = p.signal("memory", agg="max")
    lim_svc = p.signal("memory_limit", agg="max")
    restarts: dict[str, tuple[float, pd.Timestamp | None]] = {}
    for _, r, df, svcs in p.signal_frames("restarts"):
        for svc, v in _counter_increase(p, df, cut, r.label, svcs).items():
            restarts.setdefault(svc, v)
    oom_metric = {s: float(v.max()) for s, v in p.signal("oom", agg="max").items()}
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
                                        query="\n".join(q for q in (p.signal_query(x, svc) for x in
                                                                     ("memory", "memory_limit", "restarts")) if q),
                                        value={"peak_fraction_of_limit": fmt(peak_frac), "oom": n_oom,
                                               "restarts": n_restart[0], "growth_per_hour": fmt(slope)}),
                               kind="memory_leak"))
    for svc, (n, t) in restarts.items():
        if n >= 1 and not any(f.service == svc for f in out):
            out.append(Finding(svc, "container restarts", min(0.2 + 0.1 * n, 0.6), t,
                               Evidence(summary=f"{svc}: {int(n)} container restarts in the incident window"
                                        + (f", first at {iso(t)}" if t is not None else ""),
                                        source="promql", query=p.signal_query("restarts", svc),
                                        value={"restarts": n}),
                               detail={"restarts": n}))
    return out


def _counter_increase(p: Probe, df: pd.DataFrame, cut: pd.Timestamp, label: str = "",
                      only: list[str] | None = None) -> dict[str, tuple[float, pd.Timestamp | None]]:
    """Per service: restarts counted after `cut` and when the first one happened."""
    if df.empty:
        return {}
    label_cols = [c for c in df.columns if c not in ("timestamp", "value")]
    out: dict[str, tuple[float, pd.Timestamp | None]] = {}
    for key, g in df.groupby(label_cols) if label_cols else []:
        labels = dict(zip(label_cols, key if isinstance(key, tuple) else (key,)))
        svc = (map_service(str(labels.get(label, "")), p.services) if label else None) or p.service_of(labels)
        if not svc or (only is not None and svc not in only):
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
    """Connection pools near their maximum, and clients waiting for a connection (any pool dialect)."""
    out = []
    used = p.signal("pool_in_use", agg="sum")
    mx = p.signal("pool_max", agg="sum")
    share: dict[str, pd.Series] = {}
    for svc, u in used.items():
        m = mx.get(svc)
        if m is not None and len(m):
            share[svc] = (u / m.reindex(u.index, method="nearest")).replace([np.inf, -np.inf], np.nan).dropna()
        else:
            share[svc] = u
    for svc, a in scored(share, cut, "up", abs_floor=0.02, rel_floor=0.1).items():
        has_max = svc in mx
        full = a.peak >= 0.9 if has_max else a.ratio >= 2
        if a.onset is not None and full:
            q = p.signal_query("pool_in_use", svc) + (f"\n / {p.signal_query('pool_max', svc)}" if has_max else "")
            out.append(Finding(svc, "connection pool saturation", max(strength(a), 0.6), a.onset,
                               anomaly_evidence(svc, "pool in use" + (" / max" if has_max else ""), q, a),
                               kind="db_pool_exhaustion"))
    for svc, a in scored(p.signal("pool_wait"), cut, "up", abs_floor=0.01, rel_floor=0.2).items():
        if a.onset is not None and a.score >= 6 and a.level > 0.05:
            out.append(Finding(svc, "connection pool wait", strength(a), a.onset,
                               anomaly_evidence(svc, "pool wait", p.signal_query("pool_wait", svc), a),
                               kind="db_pool_exhaustion"))
    return out


def check_consumer_lag(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Consumer-group lag that grows far past its baseline: the consumer stalled or fell behind."""
    out = []
    for svc, a in scored(p.signal("consumer_lag"), cut, "up", abs_floor=10, rel_floor=0.2).items():
        s = p.signal("consumer_lag")[svc]
        growing = trend_slope(s[s.index >= (a.onset or cut)]) > 0
        if a.onset is not None and a.level >= 3 * max(a.baseline, 10) and growing:
            out.append(Finding(svc, "consumer lag", max(strength(a), 0.7), a.onset,
                               anomaly_evidence(svc, "consumer-group lag (messages)",
                                                p.signal_query("consumer_lag", svc), a),
                               kind="consumer_lag", detail={"ratio": a.ratio}))
    return out


def check_kv_cache(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """An inference server's KV cache running full (with requests queueing behind it)."""
    out = []
    queue = scored(p.signal("queue"), cut, "up", abs_floor=0.5, rel_floor=0.2)
    for svc, a in scored(p.signal("kv_cache_usage", agg="max"), cut, "up", abs_floor=0.02, rel_floor=0.05).items():
        q = queue.get(svc)
        queued = q is not None and q.onset is not None and q.level > max(q.baseline * 2, 1)
        if a.onset is not None and a.peak >= 0.9 and a.level - a.baseline >= 0.15:
            out.append(Finding(svc, "KV-cache usage", min(1.0, 0.6 + (0.2 if queued else 0) + (a.level - a.baseline)),
                               a.onset, anomaly_evidence(svc, "KV-cache usage", p.signal_query("kv_cache_usage", svc), a),
                               kind="kv_cache_saturation", detail={"queued": queued}))
    return out
