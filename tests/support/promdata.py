"""Generated metrics for PromQL tests and benchmarks: counters with resets and gaps, gauges,
histograms, at 15 s to 60 s scrape intervals with jitter, around a fixed recent time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tests.support.promserver import FIXED_NOW

BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def _times(rng: np.random.Generator, start: int, end: int, interval: float, jitter_ms: int = 0,
           gaps: list[tuple[int, int]] = ()) -> np.ndarray:  # type: ignore[assignment]
    ms = np.arange(start * 1000, end * 1000, int(interval * 1000), dtype="int64")
    if jitter_ms:
        ms = ms + rng.integers(-jitter_ms, jitter_ms + 1, len(ms))
    for a, b in gaps:
        ms = ms[(ms < a * 1000) | (ms >= b * 1000)]
    return np.unique(ms)


def _counter(rng: np.random.Generator, n: int, rate: float, resets: int) -> np.ndarray:
    inc = rng.poisson(rate, n).astype(float)
    vals = np.cumsum(inc) + rng.integers(0, 1000)
    for pos in rng.choice(np.arange(5, n - 5), size=resets, replace=False):
        vals[pos:] -= vals[pos] - rng.integers(0, 3)
    return vals


def generate(hours: float = 3.0, seed: int = 7, services: int = 3, instances: int = 2) -> pd.DataFrame:
    """A bundle-shaped metrics frame ending at FIXED_NOW."""
    rng = np.random.default_rng(seed)
    end = FIXED_NOW
    start = end - int(hours * 3600)
    rows: list[pd.DataFrame] = []

    def add(metric: str, labels: dict[str, str], ms: np.ndarray, values: np.ndarray) -> None:
        rows.append(pd.DataFrame({"timestamp": pd.to_datetime(ms, unit="ms", utc=True), "metric": metric,
                                  "labels": json.dumps(labels, sort_keys=True, separators=(",", ":")),
                                  "value": values}))

    svc_names = [f"svc{i}" for i in range(services)]
    for s_i, svc in enumerate(svc_names):
        for inst in range(instances):
            interval = (15, 30, 60)[(s_i + inst) % 3]
            gap = [(start + 3600 + 600 * s_i, start + 3600 + 600 * s_i + 900)] if inst == 0 else []
            for code in ("200", "500"):
                ms = _times(rng, start, end, interval, jitter_ms=1500 if inst else 0, gaps=gap)
                add("http_requests_total", {"service": svc, "instance": f"i{inst}", "code": code}, ms,
                    _counter(rng, len(ms), 40.0 if code == "200" else 2.0, resets=2 if inst == 0 else 1))
            ms = _times(rng, start, end, interval, jitter_ms=700, gaps=gap[:0])
            walk = 2e8 + np.cumsum(rng.normal(0, 1e6, len(ms)))
            add("memory_bytes", {"service": svc, "instance": f"i{inst}"}, ms, np.round(walk))
            ms = _times(rng, start, end, 15, gaps=gap)
            add("cpu_ratio", {"service": svc, "instance": f"i{inst}"}, ms, np.round(rng.uniform(0, 1, len(ms)), 4))
        # A histogram per service at 15 s with one reset.
        ms = _times(rng, start, end, 15)
        n = len(ms)
        per_bucket = rng.poisson([5, 8, 12, 10, 6, 3, 1], size=(n, len(BUCKETS))).astype(float)
        cum = np.cumsum(np.cumsum(per_bucket, axis=0), axis=1)
        reset_at = n // 2 + 17 * s_i
        cum[reset_at:] -= cum[reset_at]
        for b, le in enumerate(BUCKETS):
            add("request_duration_seconds_bucket", {"service": svc, "le": le}, ms, cum[:, b])
        add("request_duration_seconds_count", {"service": svc}, ms, cum[:, -1])
        total = np.cumsum(per_bucket @ np.array([0.03, 0.07, 0.2, 0.4, 0.8, 2.0, 4.0]))
        total[reset_at:] -= total[reset_at]
        add("request_duration_seconds_sum", {"service": svc}, ms, total)
    # A gauge that stops early (goes stale) and a constant one.
    ms = _times(rng, start, end - 1800, 30)
    add("queue_depth", {"queue": "emails"}, ms, rng.integers(0, 50, len(ms)).astype(float))
    ms = _times(rng, start, end, 60)
    add("build_info", {"version": "1.2.3", "service": "svc0"}, ms, np.ones(len(ms)))
    return pd.concat(rows, ignore_index=True)
