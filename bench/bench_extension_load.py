"""Extension load time: `%load_ext incidentbook` in a fresh kernel, next to a bare kernel start.

For each round a new kernel is started (timed: the baseline), then `%load_ext incidentbook` is
executed in it (timed from request to reply, in the kernel: import plus load). The goal is a
load under 300 ms; the ratio says what loading adds to opening a notebook. Prints a markdown
table for BENCHMARKS.md.

    python bench/bench_extension_load.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from jupyter_client.manager import start_new_kernel


def _execute(kc, code: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
    elapsed = time.perf_counter() - t0
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"{code!r} failed in the kernel: {reply['content'].get('evalue')}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="ib-bench-")
    os.environ["INCIDENTBOOK_HOME"] = home  # no config, nothing reachable: load must not care
    starts, loads, in_kernel = [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        starts.append(time.perf_counter() - t0)
        try:
            loads.append(_execute(kc, "%load_ext incidentbook"))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            _execute(kc, "import time as _t; _t0 = _t.perf_counter(); get_ipython().run_line_magic('load_ext', 'incidentbook'); _dt = _t.perf_counter() - _t0")
            reply = kc.execute_interactive("print(repr(_dt))", timeout=30,
                                           output_hook=lambda m: in_kernel.append(float(m["content"]["text"]))
                                           if m["msg_type"] == "stream" else None)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"| measure (median of {args.rounds} fresh kernels) | ms |")
    print("|---|---|")
    print(f"| bare kernel start (baseline) | {ms(starts):.0f} |")
    print(f"| `%load_ext incidentbook`, request to reply | {ms(loads):.0f} |")
    print(f"| import + load measured inside the kernel | {ms(in_kernel):.0f} |")
    print(f"| ratio load / kernel start | {ms(loads) / ms(starts):.2f} |")
    print(f"| goal: load under 300 ms | {'met' if ms(loads) < 300 else 'NOT met'} |")


if __name__ == "__main__":
    main()
