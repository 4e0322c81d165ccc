"""Disk space: a volume or filesystem whose free space falls fast enough to fill it soon.

Works on any `*_available_bytes` / `*_avail_bytes` metric that has a matching capacity or size
metric with the same labels: kubelet's `kubelet_volume_stats_{available,capacity}_bytes`,
node_exporter's `node_filesystem_{avail,size}_bytes`, and exporters named the same way.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe, fmt, scored, strength
from incidentbook.analysis.anomaly import trend_slope
from incidentbook.telemetry.base import METRIC_FRAME_FIXED
from incidentbook.telemetry.bundle import iso

#: Pairs every Prometheus setup has under these names, used when metric discovery is unavailable.
KNOWN_PAIRS = (("kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes"),
               ("node_filesystem_avail_bytes", "node_filesystem_size_bytes"))
#: Labels naming the volume or filesystem, for the evidence text.
VOLUME_LABELS = ("persistentvolumeclaim", "mountpoint", "device", "volume")
#: Free space that runs out within this many hours at the incident's rate is urgent.
HORIZON_H = 24.0


def free_space_queries(p: Probe) -> list[str]:
    """`available / capacity` queries for every free-space metric with a matching size metric."""
    names = p.metric_names()
    if not names:
        return [f"{a} / {c}" for a, c in KNOWN_PAIRS]
    out = []
    for avail in p.has_metric(r".+_avail(?:able)?_bytes"):
        for word in ("capacity", "size", "total"):
            cap = re.sub(r"avail(?:able)?_bytes$", f"{word}_bytes", avail)
            if cap in names:
                out.append(f"{avail} / {cap}")
                break
    return out


def _volume_service(p: Probe, labels: dict[str, str]) -> str | None:
    """The service owning a volume: its workload labels, else the PVC name `<template>-<pod>`."""
    svc = p.service_of(labels)
    if svc is None and labels.get("persistentvolumeclaim"):
        _, _, pod = labels["persistentvolumeclaim"].partition("-")
        svc = p.service_of({"pod": pod}) if pod else None
    return svc


def _per_volume(p: Probe, df: pd.DataFrame) -> dict[str, tuple[str, pd.Series]]:
    """The emptiest volume of each service: service -> (volume name, free share over time)."""
    if df.empty:
        return {}
    label_cols = [c for c in df.columns if c not in METRIC_FRAME_FIXED]
    best: dict[str, tuple[str, pd.Series]] = {}
    for key, g in df.groupby(label_cols, observed=True, dropna=False) if label_cols else [((), df)]:
        labels = dict(zip(label_cols, key if isinstance(key, tuple) else (key,)))
        labels = {k: str(v) for k, v in labels.items() if isinstance(v, str) and v}
        svc = _volume_service(p, labels)
        if svc is None:
            continue
        s = g.set_index(pd.to_datetime(g["timestamp"], utc=True))["value"].sort_index()
        name = next((labels[k] for k in VOLUME_LABELS if labels.get(k)), svc)
        if svc not in best or float(s.min()) < float(best[svc][1].min()):
            best[svc] = (name, s)
    return best


def check_disks(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Free space falling fast after the baseline (hours to full, or already nearly full)."""
    out = []
    for q in free_space_queries(p):
        vols = _per_volume(p, p.range(q))
        anomalies = scored({svc: s for svc, (_, s) in vols.items()}, cut, "down", abs_floor=0.005,
                           rel_floor=0.02, seasonal_period=None)
        for svc, a in anomalies.items():
            name, s = vols[svc]
            if a.onset is None or a.baseline - a.peak < 0.05:
                continue
            after = s[s.index >= a.onset]
            last = float(after.iloc[-1])
            filling = after[after > 0.02]  # a full disk stops falling: measure the rate before that
            filling = filling if len(filling) >= 3 else after
            per_hour = trend_slope(filling.iloc[-max(len(filling) // 2, 3):])  # the recent rate
            hours_left = last / -per_hour if per_hour < 0 else np.inf
            if not (hours_left <= HORIZON_H or last <= 0.05):
                continue
            before = trend_slope(s[s.index < cut])
            full = "full" if last <= 0.01 else f"full in {hours_left:.1f} h at this rate"
            ev = Evidence(
                summary=f"{svc}: free space on {name} {fmt(a.baseline):.0%} -> {fmt(last):.0%} "
                        f"(falling {fmt(-per_hour):.1%} of the disk per hour, {fmt(-before):.1%} before; {full}), "
                        f"from {iso(a.onset)}",
                source="promql", query=q,
                value={"baseline": fmt(a.baseline), "level": fmt(last), "per_hour": fmt(per_hour),
                       "hours_left": fmt(hours_left) if np.isfinite(hours_left) else None,
                       "onset": iso(a.onset), "volume": name})
            drop = a.baseline - a.peak
            out.append(Finding(svc, "free disk space", max(strength(a), min(drop * 2.5, 1.0)), a.onset, ev,
                               kind="disk_full", detail={"hours_left": hours_left, "volume": name, "drop": drop}))
    return out
