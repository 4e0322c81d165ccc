"""Alert -> executed notebook: `incidentbook serve` with warm kernels vs the `papermill` CLI.

Warm: a real `incidentbook serve` (loopback, one worker); each alert is POSTed to
/api/v1/alerts and timed until the store says its runbook succeeded (the notebook is written
by then). Alerts are spaced so the pool has refilled its kernel (a kernel serves one runbook).
Cold baseline: the `papermill` CLI on the same runbook with the same parameters (taken from a
warm run's notebook), as a cron job or a naive webhook handler would run it. Also reported:
`serve` with `warm_kernels = false` (papermill in-process, fresh kernel per run).

    .venv/bin/python bench/bench_warm.py [--runs 10] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from incidentbook.incidents import Store  # noqa: E402
from tests.e2e.serveproc import TOKEN, make_serve  # noqa: E402


def _serve_runs(home: Path, runs: int, warm: bool, gap_s: float, bundle: Path | None) -> tuple[list[float], Path]:
    toml = f"[server]\nworkers = 1\nwarm_kernels = {'true' if warm else 'false'}\nrate_limit_per_s = 0\n"
    server = make_serve(home, toml, bundle=bundle).start()
    store = Store(f"sqlite:///{home / 'incidentbook.db'}")
    times: list[float] = []
    notebook = None
    try:
        time.sleep(3)  # kernels warm
        for i in range(runs + 1):  # the first run is a warm-up and not counted
            t0 = time.perf_counter()
            r = requests.post(server.url + "/api/v1/alerts", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"alertname": "HighErrorRate", "service": f"svc-{i}", "severity": "critical",
                                    "summary": f"svc-{i} is failing 12% of requests"})
            r.raise_for_status()
            while True:
                incs = [x for x in store.list_incidents(limit=5) if x.service == f"svc-{i}"]
                if incs and incs[0].runbook_status in ("succeeded", "failed"):
                    assert incs[0].runbook_status == "succeeded", incs[0].runbook_error
                    break
                time.sleep(0.01)
            if i:
                times.append(time.perf_counter() - t0)
            notebook = Path(incs[0].notebook or "")
            time.sleep(gap_s)
    finally:
        store.close()
        server.stop()
    assert notebook is not None
    return times, notebook


def _papermill_cli_runs(runbook: Path, params: dict, runs: int, out_dir: Path) -> list[float]:
    pfile = out_dir / "params.json"
    pfile.write_text(json.dumps(params))
    exe = Path(sys.executable).parent / "papermill"
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), str(runbook), str(out_dir / f"pm-{i}.ipynb"), "-f", str(pfile),
                        "--cwd", str(out_dir), "--no-progress-bar"], check=True, capture_output=True,
                       env={**__import__("os").environ, "INCIDENTBOOK_HEADLESS": "1"})
        times.append(time.perf_counter() - t0)
    return times


def _row(name: str, xs: list[float]) -> str:
    return (f"| {name} | {len(xs)} | {np.percentile(xs, 50):.2f} | {np.percentile(xs, 95):.2f} | "
            f"{statistics.mean(xs):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gap", type=float, default=1.5, help="seconds between alerts (kernel refill)")
    ap.add_argument("--bundle", type=Path, default=None, help="replay this bundle in every run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        tmpdir = Path(tmp)
        warm, nb_path = _serve_runs(tmpdir / "warm", args.runs, True, args.gap, args.bundle)
        nb = nbformat.read(str(nb_path), as_version=4)
        params = nb.metadata["incidentbook"]["parameters"]
        runbook = ROOT / "runbooks" / f"{nb.metadata['incidentbook']['runbook']}.ipynb"
        (tmpdir / "pm").mkdir()
        cold = _papermill_cli_runs(runbook, params, args.runs, tmpdir / "pm")
        serve_cold, _ = _serve_runs(tmpdir / "cold", args.runs, False, 0.2, args.bundle)
    print(f"runbook: {runbook.name}{' with bundle ' + str(args.bundle) if args.bundle else ''}\n")
    print("| path | runs | p50 s | p95 s | mean s |\n|---|---|---|---|---|")
    print(_row("serve, warm kernels (alert POST -> notebook written)", warm))
    print(_row("serve, warm_kernels = false (papermill in-process)", serve_cold))
    print(_row("papermill CLI (same runbook and parameters)", cold))
    print(f"\nspeed-up at p50: {np.percentile(cold, 50) / np.percentile(warm, 50):.1f}x vs papermill CLI, "
          f"{np.percentile(serve_cold, 50) / np.percentile(warm, 50):.1f}x vs serve without warm kernels")


if __name__ == "__main__":
    main()
