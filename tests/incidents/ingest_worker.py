"""Run by test_store.py in several processes at once: ingest payloads, print the incident ids.

usage: python ingest_worker.py URL GO_FILE WORKER COUNT
Each worker opens its own Store, waits until GO_FILE exists (so all start together), then
ingests COUNT payloads with group keys of its own plus one for a group shared by all workers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from incidentbook.incidents import Store
from incidentbook.intake import parse_alertmanager

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "checkout_firing.json"


def main() -> None:
    url, go, worker, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    doc = json.loads(FIXTURE.read_text())
    store = Store(url)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("start signal never came")
        time.sleep(0.005)
    results = []
    for i in range(count):
        doc["groupKey"] = f'{{}}:{{worker="{worker}", n="{i}"}}'
        results.append(store.record_alerts(parse_alertmanager(json.dumps(doc))).incident.id)
        if i == count // 2:
            doc["groupKey"] = "{}:{shared=\"all-workers\"}"
            doc["alerts"][0]["fingerprint"] = f"shared{worker:010d}"
            results.append(store.record_alerts(parse_alertmanager(json.dumps(doc))).incident.id)
            doc["alerts"][0]["fingerprint"] = "5f3c8e1a9b2d4c70"
    print(json.dumps(results), flush=True)
    store.close()


if __name__ == "__main__":
    main()
