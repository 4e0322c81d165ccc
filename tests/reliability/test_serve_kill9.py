"""kill -9 of a real `incidentbook serve` during a storm with poison inside it.

The server is a child process on loopback (tests/e2e/serveproc.py) on a real SQLite store. The
storm carries one body refused at the boundary (a lone surrogate: 422, never stored) and one
that passes validation but that the store refuses (a trigger on the alerts table, standing in
for a store-specific failure such as PostgreSQL's NUL DataError). After a SIGKILL halfway and a
restart: nothing lost, nothing twice, the poison item failed once and visible.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.storm import send_storm, storm_plan
from tests.e2e.serveproc import TOKEN, make_serve
from tests.reliability.conftest import am_body

ALERTS = 300
CLUSTERS = 3
DURATION_S = 4.0


def _drained(url: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = requests.get(url + "/healthz", timeout=5).json()["queue"]
        if not q.get("alert", {}).get("queued", 0) and not q.get("alert", {}).get("running", 0):
            return q
        time.sleep(0.2)
    raise AssertionError(f"queue not drained: {q}")


@pytest.mark.slow
def test_kill9_during_a_storm_with_poison_loses_nothing_and_fails_the_poison_once(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    plan = storm_plan(ALERTS, clusters=CLUSTERS, per_notification=1)
    topo = "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in plan.topology.items())
    server = make_serve(home, "[server]\nworkers = 0\nrate_limit_per_s = 0\n\n[topology]\n" + topo)
    with Store.from_config(Config(home=home)) as store, store._session(write=True) as s:
        s.execute(text("CREATE TRIGGER poison BEFORE INSERT ON alerts "
                       "WHEN json_extract(NEW.labels, '$.service') = 'poison' "
                       "BEGIN SELECT RAISE(ABORT, 'poisoned row refused'); END"))
    surrogate = json.dumps(am_body("SURR")).replace("SURR", "\\ud800")
    bodies = list(plan.bodies)
    bodies.insert(100, surrogate)
    bodies.insert(len(bodies) // 2 + 5, json.dumps(am_body("poison", fp="00000000deadbeef")))
    server.start()

    def kill_and_restart() -> None:
        time.sleep(DURATION_S / 2)
        server.kill9()
        time.sleep(0.5)
        server.start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        report = send_storm(server.url + "/api/v1/alertmanager", TOKEN, bodies, DURATION_S, concurrency=12)
        killer.join()
        queue = _drained(server.url)
        assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
        page = requests.get(server.url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
        assert "1 intake item(s) failed" in page
    finally:
        killer.join()
        server.stop()

    assert report.statuses.get(422) == 1 and report.failed == 1  # only the surrogate was refused
    assert report.acked == len(bodies) - 1
    assert report.statuses.get(0, 0) > 0, "the kill should have refused some requests"
    assert queue["alert"]["failed"] == 1 and queue["alert"]["done"] == len(plan.bodies)

    exe = str(Path(sys.executable).parent / "incidentbook")
    out = subprocess.run([exe, "intake", "failed", "--json"], capture_output=True, text=True, timeout=60,
                         env={"INCIDENTBOOK_HOME": str(home), "PATH": "/usr/bin:/bin"})
    [failed] = json.loads(out.stdout)["failed"]
    assert "poisoned row refused" in failed["error"] and failed["attempts"] == 1
    assert json.loads(failed["body"])["alerts"][0]["labels"]["service"] == "poison"

    with Store(f"sqlite:///{home / 'incidentbook.db'}") as store:
        seen: Counter[str] = Counter()
        notifications = []
        for inc in store.list_incidents(limit=1000):
            for a in store.alerts(inc.id):
                seen[a.fingerprint] += 1
                notifications.append(a.notifications)
    assert set(seen) == set(plan.fingerprints)  # nothing lost, the poison never half-applied
    assert max(seen.values()) == 1 and set(notifications) == {1}  # nothing twice
