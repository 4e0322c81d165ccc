"""Time to first hypotheses: the rules investigator on a scenario bundle, against a baseline.

Baseline (same run, same bundle): open the bundle through the telemetry facade and run one
PromQL range query per service (`sum(rate(http_requests_total{service="X"}[2m]))`), which is the
least any investigation must do. The measure: `RulesInvestigator().investigate(ctx)` from a
freshly opened bundle (so loading is included). Goal: under 5 s. Prints a markdown table.

    python bench/bench_investigate.py [--scenario kv-cache-break] [--seed 1] [--rounds 3]
    python bench/bench_investigate.py --dialects 20,200 [--rounds 3]

`--dialects N,M` measures systems whose services speak the exporter dialects of the signal
catalogue (Prometheus client, Micrometer, OpenTelemetry, Istio, gRPC, Envoy, FastAPI, CloudWatch-
style), N and M services, a call tree, one failing leaf. Baseline there: the same bundle opened
and one `requests` query per service (each in its own dialect, the query picked beforehand).
It reports first-hypotheses time, its ratio to the baseline, and how both grow with services.
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


DIALECTS = ("prometheus", "micrometer", "otel", "istio", "grpc", "envoy", "fastapi", "cloudwatch")


def _dialect_system(n: int, out: Path, seed: int) -> Path:
    """A call tree of `n` services in mixed dialects; the deepest service fails at minute 70."""
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support lives beside bench/
    from tests.support.dialects import Svc, build, step

    rng = random.Random(seed)
    names = [f"svc-{i:03d}" for i in range(n)]
    topo: dict[str, list[str]] = {}
    for i in range(1, n):
        topo.setdefault(names[(i - 1) // 3], []).append(names[i])
    leaf = names[-1]
    chain = {leaf}
    cur = leaf
    while True:
        parent = next((k for k, v in topo.items() if cur in v), None)
        if parent is None:
            break
        chain.add(parent)
        cur = parent
    svcs = {}
    for name in names:
        d = rng.choice(DIALECTS)
        err = step(0.002, 0.4 if name == leaf else 0.15, 70 if name == leaf else 71) if name in chain else None
        svcs[name] = Svc(d, err=err) if err else Svc(d)
    build(svcs, topo, bundle_dir=out, alerted=names[0], seed=seed)
    return out


def _dialect_baseline(bundle: Path, queries: list[str]) -> float:
    t0 = time.perf_counter()
    ctx = context_from_bundle(bundle)
    for q in queries:
        ctx.telemetry.safe_query_range(q, ctx.window_start, ctx.window_end, 30)
    return time.perf_counter() - t0


def _dialects(sizes: list[int], rounds: int, seed: int) -> None:
    from incidentbook.agent.checks.common import Probe

    print(f"| services (mixed dialects, 2h window, median of {rounds}) | baseline s | investigate s | ratio | "
          f"top hypothesis |")
    print("|---|---|---|---|---|")
    first: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="ib-bench-dialects-") as tmp:
        for n in sizes:
            bundle = _dialect_system(n, Path(tmp) / f"n{n}", seed)
            ctx = context_from_bundle(bundle)
            disc = Probe(ctx).discovery()
            queries = [r.query() for s in ctx.services if (r := disc.resolved(s, "requests")) is not None]
            base = statistics.median(_dialect_baseline(bundle, queries) for _ in range(rounds))
            runs = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                inv = RulesInvestigator().investigate(context_from_bundle(bundle))
                runs.append((time.perf_counter() - t0, inv))
            secs = statistics.median(r[0] for r in runs)
            top = runs[0][1].hypotheses[0] if runs[0][1].hypotheses else None
            flag = "" if secs < 5 else " (over the 5 s goal)"
            print(f"| {n} | {base:.2f} | {secs:.2f}{flag} | {secs / base:.2f}x | "
                  f"{f'{top.service}:{top.fault_kind}' if top else 'none'} |")
            if first is None:
                first = (base, secs)
            else:
                print(f"\ngrowth {sizes[0]} -> {n} services: baseline x{base / first[0]:.1f}, "
                      f"investigate x{secs / first[1]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dialects", metavar="N,M", help="measure mixed-dialect systems of these sizes instead")
    ap.add_argument("--scenario", action="append", help="scenario name (repeatable; default: three kinds)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.dialects:
        _dialects([int(x) for x in args.dialects.split(",")], args.rounds, args.seed)
        return
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
