"""Alert storm against a real `incidentbook serve` on loopback: nothing lost, one incident per
cause, and a `kill -9` in the middle of the storm loses nothing and counts nothing twice.

The full 10,000 alerts / 60 s run is bench/bench_intake.py; this is the same storm scaled down.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from incidentbook.incidents import Store
from incidentbook.intake.storm import send_storm, storm_plan
from tests.e2e.serveproc import TOKEN, make_serve

ALERTS = 1000
CLUSTERS = 4
DURATION_S = 6.0


def _toml(topology: dict[str, list[str]]) -> str:
    lines = ["[server]", "workers = 0", "rate_limit_per_s = 0", "", "[topology]"]
    lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in topology.items()]
    return "\n".join(lines) + "\n"


def _drain(url: str, kinds: tuple[str, ...] = ("alert",), timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = requests.get(url + "/healthz", timeout=5).json()["queue"]
        if not any(q.get(k, {}).get("queued", 0) + q.get(k, {}).get("running", 0) for k in kinds):
            return q
        time.sleep(0.2)
    raise AssertionError(f"queue not drained after {timeout}s: {q}")


@pytest.mark.slow
def test_storm_with_kill9_mid_storm_accounts_for_every_alert_once(tmp_path: Path) -> None:
    plan = storm_plan(ALERTS, clusters=CLUSTERS)
    server = make_serve(tmp_path / "ws", _toml(plan.topology)).start()
    url = server.url + "/api/v1/alertmanager"

    def kill_and_restart() -> None:
        time.sleep(DURATION_S / 2)
        server.kill9()
        time.sleep(0.5)  # requests fail meanwhile; the sender retries like Alertmanager does
        server.start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        report = send_storm(url, TOKEN, plan.bodies, DURATION_S, concurrency=16)
        killer.join()
        queue = _drain(server.url)
    finally:
        killer.join()
        server.stop()

    assert report.acked == len(plan.bodies) and report.failed == 0, report.to_dict()
    assert report.statuses.get(0, 0) > 0, "the kill should have refused some requests"
    assert queue["alert"].get("failed", 0) == 0
    assert queue["alert"]["done"] == len(plan.bodies)  # a re-sent body already stored is one item
    assert queue["runbook"]["queued"] == CLUSTERS  # one runbook job per incident (no workers here)

    with Store(f"sqlite:///{tmp_path / 'ws' / 'incidentbook.db'}") as store:
        incidents = store.list_incidents(limit=1000)
        seen: Counter[str] = Counter()
        notifications = []
        for inc in incidents:
            for a in store.alerts(inc.id):
                seen[a.fingerprint] += 1
                notifications.append(a.notifications)
        # one incident per independent cause; every alert in exactly one, recorded once
        assert len(incidents) == CLUSTERS, [(i.id, i.service, i.group_key) for i in incidents]
        assert set(seen) == set(plan.fingerprints) and max(seen.values()) == 1
        assert set(notifications) == {1}
        for inc in incidents:
            services = {a.labels["service"] for a in store.alerts(inc.id)}
            cluster = inc.service.split("-")[1]
            assert services == {f"{t}-{cluster}" for t in ("db", "api", "web")}
            joined = [e for e in store.timeline(inc.id) if e.kind == "symptoms_joined"]
            assert joined, "correlated alerts are listed on the incident's timeline"
    print(f"\nstorm: {report.to_dict()}")
