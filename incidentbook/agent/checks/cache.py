"""Cache hit ratio: a collapsing hit ratio makes every caller and the backing store work harder."""

from __future__ import annotations

import re

import pandas as pd

from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, scored, strength


def cache_queries(p: Probe) -> list[str]:
    """Hit-ratio queries built from the hit/miss counters the source has."""
    out = []
    for hits in p.has_metric(r".*(cache|keyspace|redis|memcache).*hits?(_total)?", r".*_hits?_total"):
        misses = re.sub(r"hits?", "misses", hits, count=1)
        if misses in p.metric_names():
            h = f"sum by (service) (rate({hits}[2m]))"
            out.append(f"{h} / ({h} + sum by (service) (rate({misses}[2m])))")
    return out


def check_cache(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """A drop in cache hit ratio, attributed to the service its series names."""
    out = []
    for q in cache_queries(p):
        for svc, a in scored(p.per_service(p.range(q), agg="mean"), cut, "down", abs_floor=0.01,
                             rel_floor=0.02).items():
            if a.onset is not None and a.baseline - a.level >= 0.1:
                out.append(Finding(svc, "cache hit ratio", max(strength(a), min((a.baseline - a.level) * 2, 1)),
                                   a.onset, anomaly_evidence(svc, "cache hit ratio", q, a), kind="cache_failure",
                                   detail={"drop": a.baseline - a.level}))
    return out
