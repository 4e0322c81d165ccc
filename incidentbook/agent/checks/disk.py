"""Disk space: a volume or filesystem whose free space falls fast enough to fill it soon.

Works on any `*_available_bytes` / `*_avail_bytes` metric that has a matching capacity or size
metric with the same labels: kubelet's `kubelet_volume_stats_{available,capacity}_bytes`,
node_exporter's `node_filesystem_{avail,size}_bytes`, and exporters named the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe, fmt, scored, strength
from incidentbook.analysis.anomaly import trend_slope
from incidentbook.telemetry.base import METRIC_FRAME_FIXED
from incidentbook.telemetry.bundle import iso

#: Labels naming the volume or filesystem, for the evidence text.
VOLUME_LABELS = ("persistentvolumeclaim", "mountpoint", "device", "volume")
#: Free space that runs out within this many hours at the incident's rate is urgent.
HORIZON_H = 24.0


def _volume_service(p: Probe, labels: dict[str, str]) -> str | None:
    """The service owning a volume: its workload labels, else the PVC name `<template>-<pod>`."""
    svc = p.service_of(labels)
    if svc is None and labels.get("persistentvolumeclaim"):
        _, _, pod = labels["persistentvolumeclaim"].partition("-")
        svc = p.service_of({"pod": pod}) if pod else None
    return svc


def _per_volume(p: Probe, df: pd.DataFrame, only: list[str] | None = None) -> dict[str, tuple[str, pd.Series]]:
    """The emptiest volume of each service: service -> (volume name, free share over time)."""
    if df.empty:
        return {}
    label_cols = [c for c in df.columns if c not in METRIC_FRAME_FIXED]
    best: dict[str, tuple[str, pd.Series]] = {}
    for key, g in df.groupby(label_cols, observed=True, dropna=False) if label_cols else [((), df)]:
        labels = dict(zip(label_cols, key if isinstance(key, tuple) else (key,)))
        labels = {k: str(v) for k, v in labels.items() if isinstance(v, str) and v}
        svc = _volume_service(p, labels)
        if svc is None or (only is not None and svc not in only):
            continue
        s = g.set_index(pd.to_datetime(g["timestamp"], utc=True))["value"].sort_index()
        name = next((labels[k] for k in VOLUME_LABELS if labels.get(k)), svc)
        if svc not in best or float(s.min()) < float(best[svc][1].min()):
            best[svc] = (name, s)
    return best


def check_disks(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Free space that runs out soon, or has run out, on any volume dialect the catalogue knows.

    Two ways in: free space falling fast after the baseline (an onset), or a fill that began
    before the window (a disk filling for hours has no onset in it): that one is judged by its
    level and its time to exhaustion.
    """
    out = []
    for q, _, df, svcs in p.signal_frames("disk_free_ratio"):
        vols = _per_volume(p, df, svcs)
        anomalies = scored({svc: s for svc, (_, s) in vols.items()}, cut, "down", abs_floor=0.005,
                           rel_floor=0.02, seasonal_period=None)
        for svc, (name, s) in vols.items():
            f = _judge(svc, name, s, anomalies.get(svc), cut, q)
            if f is not None:
                out.append(f)
    return out


def _judge(svc: str, name: str, s: pd.Series, a: Any, cut: pd.Timestamp, q: str) -> Finding | None:
    s = s.dropna()
    if len(s) < 3:
        return None
    fell = a is not None and a.onset is not None and a.baseline - a.peak >= 0.05
    onset = a.onset if fell else None
    after = s[s.index >= onset] if onset is not None else s[s.index >= cut]
    if after.empty:
        return None
    last = float(after.iloc[-1])
    filling = after[after > 0.02]  # a full disk stops falling: measure the rate before that
    filling = filling if len(filling) >= 3 else (s[s > 0.02] if len(s[s > 0.02]) >= 3 else s)
    per_hour = trend_slope(filling.iloc[-max(len(filling) // 2, 3):])  # the recent rate
    hours_left = last / -per_hour if per_hour < 0 else np.inf
    if not fell:
        # a trend from before the window: only its level and time to exhaustion count
        whole = float(s.iloc[0]) - last
        if not (last <= 0.05 or (hours_left <= HORIZON_H / 4 and whole >= 0.05)):
            return None
        low = s[s <= max(0.05, last + 0.005)]
        onset = pd.Timestamp(low.index[0]) if len(low) else pd.Timestamp(cut)
        baseline = float(s.iloc[0])
    else:
        if not (hours_left <= HORIZON_H or last <= 0.05):
            return None
        baseline = float(a.baseline)
    before = trend_slope(s[s.index < cut])
    full = "full" if last <= 0.01 else f"full in {hours_left:.1f} h at this rate"
    how = "" if fell else " (filling since before the window)"
    ev = Evidence(
        summary=f"{svc}: free space on {name} {fmt(baseline):.0%} -> {fmt(last):.0%} "
                f"(falling {fmt(-per_hour):.1%} of the disk per hour, {fmt(-before):.1%} before; {full}){how}, "
                f"from {iso(onset)}",
        source="promql", query=q,
        value={"baseline": fmt(baseline), "level": fmt(last), "per_hour": fmt(per_hour),
               "hours_left": fmt(hours_left) if np.isfinite(hours_left) else None,
               "onset": iso(onset), "volume": name, "trend_before_window": not fell})
    if fell:
        drop = a.baseline - a.peak
        power = max(strength(a), min(drop * 2.5, 1.0))
    else:
        drop = baseline - last
        power = min(1.0, max(0.5, 1.0 - last / 0.1))  # nearly full is conclusive whatever the onset
    return Finding(svc, "free disk space", power, onset, ev, kind="disk_full",
                   detail={"hours_left": hours_left, "volume": name, "drop": drop})
