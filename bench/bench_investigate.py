"""Time to first hypotheses: the rules investigator on a scenario bundle, against a baseline.

Baseline (same run, same bundle): open the bundle through the telemetry facade and run one
PromQL range query per service (`sum(rate(http_requests_total{service="X"}[2m]))`), which is the
least any investigation must do. The measure: `RulesInvestigator().investigate(ctx)` from a
freshly opened bundle (so loading is included). Goal: under 5 s. Prints a markdown table.

    python bench/bench_investigate.py [--scenario kv-cache-break] [--seed 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from incidentbook.agent.rules import RulesInvestigator
from incidentbook.evals.runner import context_from_bundle
from incidentbook.scenarios import generate


def _baseline(bundle: Path) -> float:
    t0 = time.perf_counter()
    ctx = context_from_bundle(bundle)
    for svc in ctx.services:
        ctx.telemetry.safe_query_range(f'sum(rate(http_requests_total{{service="{svc}"}}[2m]))',
                                       ctx.window_start, ctx.window_end, 30)
    return time.perf_counter() - t0


def _investigate(bundle: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    inv = RulesInvestigator().investigate(context_from_bundle(bundle))
    return time.perf_counter() - t0, len(inv.hypotheses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", action="append", help="scenario name (repeatable; default: three kinds)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = args.scenario or ["kv-cache-break", "credential-stuffing", "marketing-launch"]
    print(f"| scenario (seed {args.seed}, 3h window, median of {args.rounds}) | baseline s | investigate s | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ib-bench-") as tmp:
        for name in names:
            bundle = generate(name, Path(tmp) / name, seed=args.seed).bundle_dir
            base = statistics.median(_baseline(bundle) for _ in range(args.rounds))
            runs = [_investigate(bundle) for _ in range(args.rounds)]
            inv = statistics.median(r[0] for r in runs)
            flag = "" if inv < 5 else " (over the 5 s goal)"
            print(f"| {name} | {base:.2f} | {inv:.2f}{flag} | {inv / base:.1f}x |")


if __name__ == "__main__":
    main()
