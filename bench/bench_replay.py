"""Replay engine vs a real Prometheus: the same query set on the same data, wall time per query.

Prometheus is timed through its HTTP API including the JSON decode (what a user waits for);
the replay engine through `query_range_raw` / `query_raw` (the same JSON-shaped answer) and
through the DataFrame method `query_range`. Prints a markdown table for BENCHMARKS.md.

    .venv/bin/python bench/bench_replay.py [--hours 3] [--services 10] [--instances 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incidentbook.telemetry.replay import ReplaySource  # noqa: E402
from tests.support import promserver  # noqa: E402
from tests.support.promdata import generate  # noqa: E402

RANGE_QUERIES = [
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (service) (rate(http_requests_total[5m]))",
    'sum by (service) (rate(http_requests_total{code="500"}[5m])) / sum by (service) (rate(http_requests_total[5m]))',
    "histogram_quantile(0.99, sum by (le, service) (rate(request_duration_seconds_bucket[5m])))",
    "increase(http_requests_total[1h])",
    "avg_over_time(cpu_ratio[10m])",
    "quantile_over_time(0.9, cpu_ratio[10m])",
    "max by (service) (memory_bytes)",
    "topk(5, memory_bytes)",
    "deriv(memory_bytes[15m])",
    "memory_bytes / on(service) group_left(version) build_info",
    "cpu_ratio > 0.9",
    "label_replace(memory_bytes, \"svc\", \"$1\", \"service\", \"svc(.*)\")",
    # subqueries: the inner expression is evaluated at its own aligned steps
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(sum by (service) (rate(http_requests_total[5m]))[1h:5m])",
    "max_over_time(deriv(memory_bytes[10m])[20m:30s])",
]
INSTANT_QUERIES = [
    "max_over_time(rate(http_requests_total[5m])[1h:1m])",
    "sum by (service) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    "topk(3, max_over_time(memory_bytes[1h]))",
]


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of `repeat` runs after one warm-up."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--instances", type=int, default=5)
    ap.add_argument("--step", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    reason = promserver.binaries_available()
    if reason:
        sys.exit(f"cannot run the replay benchmark: {reason}")
    data = generate(hours=args.hours, services=args.services, instances=args.instances)
    t0 = time.perf_counter()
    # Prometheus 2.x semantics, as the Prometheus it is timed against (Debian's 2.42); subqueries
    # without a step use the test server's 15 s evaluation interval there as here.
    replay = ReplaySource.from_frame(data, promql="2", subquery_step_s=15)
    load_s = time.perf_counter() - t0
    end = promserver.FIXED_NOW
    start = end - int(args.hours * 3600) + 600
    points = int((end - start) // args.step) + 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with promserver.start_prometheus(Path(tmp), data) as prom:
            for q in RANGE_QUERIES:
                p = timed(lambda q=q: prom.query_range(q, start, end, args.step), args.repeat)
                r = timed(lambda q=q: replay.query_range_raw(q, start, end, args.step), args.repeat)
                f = timed(lambda q=q: replay.query_range(q, start, end, args.step), args.repeat)
                n = len(prom.query_range(q, start, end, args.step)["result"])
                rows.append(("range", q, n, p, r, f))
            for q in INSTANT_QUERIES:
                p = timed(lambda q=q: prom.query(q, end), args.repeat)
                r = timed(lambda q=q: replay.query_raw(q, end), args.repeat)
                f = timed(lambda q=q: replay.query(q, end), args.repeat)
                n = len(prom.query(q, end)["result"])
                rows.append(("instant", q, n, p, r, f))
    series = len(replay.store.labels)
    samples = len(replay.store.times)
    print(f"Data: {series} series, {samples} samples over {args.hours:g} h; range queries "
          f"{points} steps of {args.step:g} s; median of {args.repeat} runs; replay load {load_s * 1000:.0f} ms.\n")
    print("| kind | query | series | Prometheus ms | replay raw ms | ratio | replay DataFrame ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, q, n, p, r, f in rows:
        print(f"| {kind} | `{q}` | {n} | {p * 1000:.1f} | {r * 1000:.1f} | {r / p:.2f} | {f * 1000:.1f} |")
    tp, tr, tf = (sum(x[i] for x in rows) for i in (3, 4, 5))
    print(f"| **total** | | | **{tp * 1000:.0f}** | **{tr * 1000:.0f}** | **{tr / tp:.2f}** | **{tf * 1000:.0f}** |")
    print(f"\nReplay / Prometheus wall time over the whole set: {tr / tp:.2f}x (raw JSON shape), "
          f"{tf / tp:.2f}x (DataFrame). Goal: within 1x.")


if __name__ == "__main__":
    main()
