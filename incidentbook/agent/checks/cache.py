"""Cache hit ratio: a collapsing hit ratio makes every caller and the backing store work harder."""

from __future__ import annotations

import pandas as pd

from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, scored, strength


def check_cache(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """A drop in cache hit ratio (redis, memcached or any hits/misses pair), per service."""
    out = []
    for svc, a in scored(p.signal("cache_hit_ratio", agg="mean"), cut, "down", abs_floor=0.01,
                         rel_floor=0.02).items():
        if a.onset is not None and a.baseline - a.level >= 0.1:
            out.append(Finding(svc, "cache hit ratio", max(strength(a), min((a.baseline - a.level) * 2, 1)),
                               a.onset, anomaly_evidence(svc, "cache hit ratio", p.signal_query("cache_hit_ratio", svc),
                                                         a), kind="cache_failure",
                               detail={"drop": a.baseline - a.level}))
    return out
