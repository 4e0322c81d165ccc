"""Alert storm against a real `incidentbook serve` (loopback): throughput, ack latency, no loss.

Default: 10,000 alerts over 60 s, one alert per webhook request (10,000 requests), 4 independent
causes (call chains web-i -> api-i -> db-i), no runbook workers (intake only). With --kill, the
server is killed with SIGKILL halfway through and restarted; the sender retries as Alertmanager
does. Afterwards the store is checked: every alert in exactly one incident, recorded once,
and the number of incidents equals the number of causes.

    .venv/bin/python bench/bench_intake.py [--alerts 10000] [--duration 60] [--per-notification 1] [--kill]
    .venv/bin/python bench/bench_intake.py --duration 0     # as fast as the server takes them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incidentbook.incidents import Store  # noqa: E402
from incidentbook.intake.storm import send_storm, storm_plan  # noqa: E402
from tests.e2e.serveproc import TOKEN, make_serve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--per-notification", type=int, default=1)
    ap.add_argument("--clusters", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--kill", action="store_true", help="kill -9 the server halfway and restart it")
    args = ap.parse_args()

    plan = storm_plan(args.alerts, clusters=args.clusters, per_notification=args.per_notification)
    toml = "[server]\nworkers = 0\nrate_limit_per_s = 0\n\n[topology]\n" + "".join(
        f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in plan.topology.items())
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        home = Path(tmp) / "ws"
        server = make_serve(home, toml).start()
        killer = None
        if args.kill:
            def kill_restart() -> None:
                time.sleep(max(1.0, args.duration / 2))
                server.kill9()
                time.sleep(0.5)
                server.start()
            killer = threading.Thread(target=kill_restart)
            killer.start()
        try:
            report = send_storm(server.url + "/api/v1/alertmanager", TOKEN, plan.bodies, args.duration,
                                concurrency=args.concurrency)
            if killer:
                killer.join()
            t0 = time.monotonic()
            while True:
                q = requests.get(server.url + "/healthz", timeout=10).json()["queue"]
                if not q.get("alert", {}).get("queued", 0):
                    break
                time.sleep(0.1)
            drain_s = time.monotonic() - t0
        finally:
            if killer:
                killer.join()
            server.stop()
        with Store(f"sqlite:///{home / 'incidentbook.db'}") as store:
            incidents = store.list_incidents(limit=10_000)
            seen: Counter[str] = Counter()
            notes = Counter()
            for inc in incidents:
                for a in store.alerts(inc.id):
                    seen[a.fingerprint] += 1
                    notes[a.notifications] += 1
    lost = len(set(plan.fingerprints) - set(seen))
    doubled = sum(1 for v in seen.values() if v > 1) + sum(n for k, n in notes.items() if k > 1)
    r = report.to_dict()
    print(f"{args.alerts} alerts in {len(plan.bodies)} requests over {args.duration:g} s"
          f"{' (kill -9 halfway)' if args.kill else ''}, {args.concurrency} senders, SQLite store\n")
    print("| metric | value |\n|---|---|")
    for k, v in [("requests acknowledged", f"{r['acked']}/{len(plan.bodies)}"),
                 ("throughput (acked requests/s)", r["throughput_per_s"]),
                 ("ack p50 ms", r["ack_p50_ms"]), ("ack p99 ms", r["ack_p99_ms"]),
                 ("retries (refused while down)", r["retries"]), ("duplicates (stored, ack lost)", r["duplicates"]),
                 ("queue drained after the storm s", round(drain_s, 2)),
                 ("alerts lost", lost), ("alerts counted twice", doubled),
                 ("incidents (expected)", f"{len(incidents)} ({args.clusters})")]:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
