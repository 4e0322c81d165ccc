"""Alert storm against a real `incidentbook serve` (loopback): throughput, ack latency, no loss.

Default: 10,000 alerts over 60 s, one alert per webhook request (10,000 requests), 4 independent
causes (call chains web-i -> api-i -> db-i), no runbook workers (intake only). With --kill, the
server is killed with SIGKILL halfway through and restarted; the sender retries as Alertmanager
does. Afterwards the store is checked: every alert in exactly one incident, recorded once,
and the number of incidents equals the number of causes.

    .venv/bin/python bench/bench_intake.py [--alerts 10000] [--duration 60] [--per-notification 1] [--kill]
    .venv/bin/python bench/bench_intake.py --duration 0     # as fast as the server takes them
    .venv/bin/python bench/bench_intake.py --poison         # + every 1,000th body poisoned
    .venv/bin/python bench/bench_intake.py --page-load      # + 40 concurrent incidents-page loads

--poison and --page-load run the clean storm first, on a fresh server in the same invocation,
and report ack p50/p99, lost and twice-counted alerts of each run and the ratio to the clean one.
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
from typing import Any

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incidentbook.incidents import Store  # noqa: E402
from incidentbook.intake.storm import send_storm, storm_plan  # noqa: E402
from tests.e2e.serveproc import TOKEN, make_serve  # noqa: E402

POISONS = (
    lambda b: b.replace('"service": "', '"service": "\\ud800', 1),       # lone surrogate
    lambda b: b.replace('"service": "', '"service": "\\u0000', 1),       # NUL
    lambda b: b[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",  # 100k-deep nesting
)


def poisoned(bodies: list[str], every: int) -> tuple[list[str], int]:
    """Every `every`-th body replaced by a poison one (rotating kinds); returns (bodies, poisons)."""
    out, n = [], 0
    for i, b in enumerate(bodies, 1):
        if i % every == 0:
            out.append(POISONS[n % len(POISONS)](b))
            n += 1
        else:
            out.append(b)
    return out, n


def _seed_big_incident(url: str, alerts: int) -> None:
    """One incident holding `alerts` alerts (the page used to read every one of them)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    group = {"alertname": "Seeded", "service": "seed"}
    for start in range(0, alerts, 500):
        batch = [{"status": "firing", "labels": {**group, "pod": f"seed-{i}"}, "annotations": {},
                  "startsAt": "2026-01-01T00:00:00Z", "fingerprint": f"5eed{i:012x}"}
                 for i in range(start, min(alerts, start + 500))]
        body = {"version": "4", "groupKey": "{}:" + json.dumps(group), "status": "firing",
                "receiver": "bench", "groupLabels": group, "commonLabels": group, "alerts": batch}
        r = requests.post(url + "/api/v1/alertmanager", data=json.dumps(body), headers=headers, timeout=60)
        r.raise_for_status()


def _page_loaders(url: str, n: int, stop: threading.Event, latencies: list[float]) -> list[threading.Thread]:
    def load() -> None:
        s = requests.Session()
        while not stop.is_set():
            t0 = time.perf_counter()
            r = s.get(url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)
    threads = [threading.Thread(target=load, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def run_once(args: argparse.Namespace, plan: Any, bodies: list[str], kill: bool = False,
             page_loads: int = 0, seed_alerts: int = 0) -> dict[str, Any]:
    """One storm against a fresh server; returns the figures and the store's accounting."""
    toml = "[server]\nworkers = 0\nrate_limit_per_s = 0\n\n[topology]\n" + "".join(
        f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in plan.topology.items())
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        home = Path(tmp) / "ws"
        server = make_serve(home, toml).start()
        if seed_alerts:
            _seed_big_incident(server.url, seed_alerts)
            _wait_drained(server.url)
        killer = None
        if kill:
            def kill_restart() -> None:
                time.sleep(max(1.0, args.duration / 2))
                server.kill9()
                time.sleep(0.5)
                server.start()
            killer = threading.Thread(target=kill_restart)
            killer.start()
        stop = threading.Event()
        page_lat: list[float] = []
        loaders = _page_loaders(server.url, page_loads, stop, page_lat) if page_loads else []
        try:
            report = send_storm(server.url + "/api/v1/alertmanager", TOKEN, bodies, args.duration,
                                concurrency=args.concurrency)
            stop.set()
            for t in loaders:
                t.join(timeout=120)
            if killer:
                killer.join()
            t0 = time.monotonic()
            _wait_drained(server.url)
            drain_s = time.monotonic() - t0
        finally:
            stop.set()
            if killer:
                killer.join()
            server.stop()
        with Store(f"sqlite:///{home / 'incidentbook.db'}") as store:
            incidents = [i for i in store.list_incidents(limit=10_000) if i.service != "seed"]
            seen: Counter[str] = Counter()
            notes: Counter[int] = Counter()
            for inc in incidents:
                for a in store.alerts(inc.id):
                    seen[a.fingerprint] += 1
                    notes[a.notifications] += 1
    expected = {fp for fp, b in zip(plan.fingerprints, plan.bodies) if b in bodies} if \
        args.per_notification == 1 else set(plan.fingerprints)
    r = report.to_dict()
    r.update(drain_s=round(drain_s, 2), incidents=len(incidents),
             lost=len(expected - set(seen)),
             twice=sum(1 for v in seen.values() if v > 1) + sum(n for k, n in notes.items() if k > 1))
    if page_lat:
        r.update(page_loads=len(page_lat), page_p50_ms=round(float(np.percentile(page_lat, 50)) * 1000, 1),
                 page_p99_ms=round(float(np.percentile(page_lat, 99)) * 1000, 1))
    return r


def _wait_drained(url: str) -> None:
    while True:
        q = requests.get(url + "/healthz", timeout=10).json()["queue"] or {}
        if not q.get("alert", {}).get("queued", 0):
            return
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--per-notification", type=int, default=1)
    ap.add_argument("--clusters", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--kill", action="store_true", help="kill -9 the server halfway and restart it")
    ap.add_argument("--poison", action="store_true",
                    help="also run with every 1,000th body poisoned (surrogate, NUL, 100k-deep) and compare")
    ap.add_argument("--poison-every", type=int, default=1000)
    ap.add_argument("--page-load", action="store_true",
                    help="also run with 40 concurrent incidents-page loads and a 10k-alert incident; compare")
    ap.add_argument("--page-loaders", type=int, default=40)
    ap.add_argument("--seed-alerts", type=int, default=10_000)
    args = ap.parse_args()

    plan = storm_plan(args.alerts, clusters=args.clusters, per_notification=args.per_notification)
    runs: list[tuple[str, dict[str, Any]]] = []
    seed = args.seed_alerts if args.page_load else 0
    runs.append(("clean", run_once(args, plan, plan.bodies, kill=args.kill, seed_alerts=seed)))
    poisons = 0
    if args.poison:
        bodies, poisons = poisoned(plan.bodies, args.poison_every)
        runs.append((f"poison every {args.poison_every}", run_once(args, plan, bodies, kill=args.kill)))
    if args.page_load:
        runs.append((f"{args.page_loaders} page loaders", run_once(
            args, plan, plan.bodies, kill=args.kill, page_loads=args.page_loaders, seed_alerts=seed)))

    print(f"{args.alerts} alerts in {len(plan.bodies)} requests over {args.duration:g} s"
          f"{' (kill -9 halfway)' if args.kill else ''}, {args.concurrency} senders, SQLite store"
          f"{f', a {seed}-alert incident seeded' if seed else ''}\n")
    base = runs[0][1]
    cols = [name for name, _ in runs]
    print("| metric | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    rows = [("requests acknowledged", "acked"), ("refused 4xx (poison)", "failed"), ("ack p50 ms", "ack_p50_ms"),
            ("ack p99 ms", "ack_p99_ms"), ("throughput (acked/s)", "throughput_per_s"),
            ("queue drained after s", "drain_s"), ("alerts lost", "lost"), ("alerts counted twice", "twice"),
            ("incidents", "incidents"), ("page loads", "page_loads"), ("page p50 ms", "page_p50_ms"),
            ("page p99 ms", "page_p99_ms")]
    for label, key in rows:
        if all(key not in r for _, r in runs):
            continue
        print(f"| {label} | " + " | ".join(str(r.get(key, "-")) for _, r in runs) + " |")
    for name, r in runs[1:]:
        print(f"\nack p99 ratio ({name} / clean): {r['ack_p99_ms'] / base['ack_p99_ms']:.2f}; "
              f"p50 ratio {r['ack_p50_ms'] / base['ack_p50_ms']:.2f}")
    if poisons:
        print(f"poison bodies sent: {poisons}")


if __name__ == "__main__":
    main()
