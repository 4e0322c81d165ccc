"""Alert file -> executed incident notebook, next to the plain `papermill` CLI on the same runbook.

Both are timed as whole commands (what a user waits for), fresh state each repetition:
  A: `incidentbook ingest alert.json`   (parse, store, select, parameterise, execute, record)
  B: `papermill generic.ipynb out.ipynb -p …`  (execute only; the floor for a cold kernel)
Prints a markdown table; the ratio A/B is the overhead incidentbook adds around papermill.

Run: .venv/bin/python bench/bench_ingest.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def payload(i: int) -> dict:
    """A firing HighErrorRate alert for a fresh alert group."""
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="HighErrorRate",bench="{i}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "incidentbook", "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "page"},
        "commonAnnotations": {"summary": "checkout 5xx ratio above 5%"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "page", "namespace": "shop"},
            "annotations": {"summary": "checkout 5xx ratio above 5%"},
            "startsAt": "2026-11-23T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": f"{i:016x}",
        }],
    }


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    a_times, b_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        env = {**os.environ, "INCIDENTBOOK_HOME": str(tmpd / "home")}
        runbook = ROOT / "runbooks" / "generic.ipynb"
        for i in range(args.repeat):
            alert = tmpd / f"alert{i}.json"
            alert.write_text(json.dumps(payload(i)))
            a_times.append(timed([str(BIN / "incidentbook"), "ingest", str(alert)], env))
            b_times.append(timed([str(BIN / "papermill"), "--no-progress-bar", str(runbook), str(tmpd / f"pm{i}.ipynb"),
                                  "-p", "incident_id", f"INC-BENCH-{i}", "-p", "alertname", "HighErrorRate",
                                  "-p", "service", "checkout"], env))
    a, b = statistics.median(a_times), statistics.median(b_times)
    print(f"| alert file -> executed notebook (generic runbook, {args.repeat} runs, median) | seconds |")
    print("|---|---|")
    print(f"| `incidentbook ingest alert.json` | {a:.2f} |")
    print(f"| `papermill generic.ipynb` (baseline) | {b:.2f} |")
    print(f"| ratio incidentbook / papermill | {a / b:.2f} |")


if __name__ == "__main__":
    main()
