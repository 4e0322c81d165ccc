"""JSON -> DataFrame: our `result_to_frame` vs prometheus-api-client's `MetricRangeDataFrame`.

200 series x 1441 points (a 6-hour window at 15 s), generated in-process as the `result` list
a Prometheus range query returns. Run: `python bench/bench_json_to_frame.py [--repeat N]`.
Goal: ours at least 4x faster.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from prometheus_api_client import MetricRangeDataFrame

from incidentbook.telemetry.prometheus import result_to_frame

SERIES = 200
POINTS = 1441
STEP_S = 15
START = 1_763_892_000


def make_result(series: int = SERIES, points: int = POINTS, seed: int = 7) -> list[dict]:
    """A range-query `result` list as Prometheus serialises it (values as strings)."""
    rng = random.Random(seed)
    result = []
    for i in range(series):
        metric = {"__name__": "http_requests_total", "job": f"svc-{i % 10}",
                  "instance": f"10.0.{i // 250}.{i % 250}:8080", "code": ("200", "500")[i % 2]}
        v = 0.0
        values = []
        for k in range(points):
            v += rng.random() * 10
            values.append([START + k * STEP_S, repr(round(v, 3))])
        result.append({"metric": metric, "values": values})
    # Round-trip through JSON so both converters see exactly what the HTTP client would decode.
    return json.loads(json.dumps(result))


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    result = make_result()
    ours = best_of(lambda: result_to_frame({"resultType": "matrix", "result": result}), args.repeat)
    theirs = best_of(lambda: MetricRangeDataFrame(result), args.repeat)
    rows = SERIES * POINTS
    print(f"series={SERIES} points={POINTS} rows={rows} (best of {args.repeat})")
    print(f"result_to_frame       {ours * 1000:8.1f} ms")
    print(f"MetricRangeDataFrame  {theirs * 1000:8.1f} ms")
    print(f"speedup               {theirs / ours:8.1f}x (goal >= 4x)")


if __name__ == "__main__":
    main()
