"""Honest health (/healthz vs /readyz), the watchdog, page authentication and a full disk.

In-process FastAPI app on a real SQLite store; the full-disk case runs on a small tmpfs this
test mounts (needs root; skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.server import ServerSettings, create_app, notebook_url
from incidentbook.intake.service import IntakeService
from tests.reliability.conftest import AUTH, TOKEN, am_body


def _wait(pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class WorkerKilled(BaseException):
    """What kills a thread for real: not an Exception, so no handler in the loop catches it."""


def test_a_dead_intake_worker_fails_readiness_and_is_restarted(tmp_path: Path) -> None:
    cfg = Config(home=tmp_path)
    store = Store.from_config(cfg)
    service = IntakeService(cfg, store, run_runbooks=False)
    service.watchdog_interval_s = 0.5
    real = service.queue.process_alerts
    calls = {"n": 0}

    def dies_once(limit: int = 100) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise WorkerKilled("injected")
        return real(limit)

    service.queue.process_alerts = dies_once  # type: ignore[method-assign]
    client = TestClient(create_app(service, ServerSettings(token=TOKEN)))
    service.start()
    try:
        r = _wait(lambda: (x := client.get("/readyz")).status_code == 503 and x)
        assert any("incidentbook-intake is dead" in why and "WorkerKilled" in why for why in r.json()["reasons"])
        assert client.get("/healthz").status_code == 200  # alive: the process answers
        _wait(lambda: client.get("/readyz").status_code == 200)
        assert client.post("/api/v1/alertmanager", content=json.dumps(am_body("after-restart")),
                           headers=AUTH).status_code == 202
        _wait(lambda: store.count_incidents() == 1)
        metrics = client.get("/metrics", headers=AUTH).text
        assert 'incidentbook_worker_restarts_total{worker="intake"} 1.0' in metrics
    finally:
        service.stop(timeout=5)
        store.close()


def test_readiness_names_a_stuck_queue_and_the_page_shows_failed_items(tmp_path: Path) -> None:
    cfg = Config(home=tmp_path)
    cfg.server.ready_max_pending_s = 0.05
    with Store.from_config(cfg) as store:
        service = IntakeService(cfg, store, run_runbooks=False)  # not started: nothing drains the queue
        client = TestClient(create_app(service, ServerSettings(token=TOKEN)))
        assert client.get("/readyz").json() == {"status": "ready", "reasons": []}
        service.submit("alertmanager", json.dumps(am_body("waiting")))
        time.sleep(0.1)
        r = client.get("/readyz")
        assert r.status_code == 503 and "oldest queued alert has waited" in r.json()["reasons"][0]
        page = client.get("/", headers=AUTH).text
        assert "stuck?" in page
        service.queue.enqueue_alert("alertmanager", '{"version": "4"}')  # stored before checks existed
        service.queue.process_alerts()
        page = client.get("/", headers=AUTH).text
        assert "1 intake item(s) failed" in page and "incidentbook intake failed" in page
        metrics = client.get("/metrics", headers=AUTH).text
        assert 'incidentbook_work_failed_items{kind="alert"} 1.0' in metrics


@pytest.fixture
def app_client(tmp_path: Path) -> Any:
    cfg = Config(home=tmp_path)
    cfg.server.rate_limit_per_s = 0
    store = Store.from_config(cfg)
    service = IntakeService(cfg, store, run_runbooks=False)
    client = TestClient(create_app(service, ServerSettings(
        token=TOKEN, lab_url="http://127.0.0.1:8701?token=lab-secret-token", generic_token="generic-only")))
    yield client, service
    store.close()


def test_every_page_needs_the_token_and_probes_do_not(app_client: Any) -> None:
    client, _ = app_client
    for path in ("/", "/metrics", "/openapi.json", "/docs", "/api/v1/incidents"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    html = client.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 401 and "<form method='post' action='/login'>" in html.text
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/", headers=AUTH).status_code == 200


def test_login_sets_a_cookie_that_is_not_the_token(app_client: Any) -> None:
    client, _ = app_client
    r = client.post("/login", content="token=nope&next=/", follow_redirects=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401 and "wrong token" in r.text and "set-cookie" not in r.headers
    r = client.post("/login", content=f"token={TOKEN}&next=//evil.example/x", follow_redirects=False,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    assert client.get("/").status_code == 200  # the client keeps the cookie
    client.cookies.clear()
    assert client.get("/").status_code == 401
    client.cookies.set("incidentbook_session", "forged")
    assert client.get("/").status_code == 401


def test_notebook_links_never_carry_a_token(app_client: Any, tmp_path: Path) -> None:
    client, service = app_client
    assert client.post("/api/v1/alertmanager", content=json.dumps(am_body("checkout")), headers=AUTH).status_code == 202
    [done] = service.queue.process_alerts()
    nb = service.cfg.incidents_dir / done.incident_id / "notebook.ipynb"
    service.store.set_runbook(done.incident_id, "generic", str(nb))
    page = client.get("/", headers=AUTH).text
    listed = client.get("/api/v1/incidents", headers=AUTH).text
    assert f"/lab/tree/incidents/{done.incident_id}/notebook.ipynb" in page
    for text in (page, listed):
        assert "lab-secret-token" not in text and "token=" not in text
    inc = service.store.get_incident(done.incident_id)
    assert "token" not in notebook_url("http://h:1/?token=abc", tmp_path, inc)


def test_the_generic_endpoint_takes_only_its_own_token(app_client: Any) -> None:
    client, _ = app_client
    body = json.dumps({"alertname": "DiskFull", "service": "db"})
    assert client.post("/api/v1/alerts", content=body, headers=AUTH).status_code == 401
    assert client.post("/api/v1/alerts", content=body,
                       headers={"Authorization": "Bearer generic-only"}).status_code == 202
    am = json.dumps(am_body("x"))
    assert client.post("/api/v1/alertmanager", content=am,
                       headers={"Authorization": "Bearer generic-only"}).status_code == 401


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8); the full-disk case is not run")
    where.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the full-disk case is not run")


def test_a_full_disk_gives_503_and_intake_recovers(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "6m")
    try:
        cfg = Config(home=mnt)
        cfg.server.rate_limit_per_s = 0
        cfg.server.min_free_mb = 1
        store = Store.from_config(cfg)
        service = IntakeService(cfg, store, run_runbooks=False)
        client = TestClient(create_app(service, ServerSettings(token=TOKEN)))
        assert client.post("/api/v1/alertmanager", content=json.dumps(am_body("a")), headers=AUTH).status_code == 202
        filler = mnt / "filler"
        with filler.open("wb") as f:  # fill the filesystem to the last block
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        r = client.post("/api/v1/alertmanager", content=json.dumps(am_body("b")), headers=AUTH)
        assert r.status_code == 503 and "disk full" in r.json()["detail"] and r.headers["retry-after"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and any("disk full" in x for x in ready.json()["reasons"])
        # Below the configured reserve is refused up front; with no reserve, SQLite's own
        # "disk is full" is a 503 too, never a 500.
        cfg.server.min_free_mb = 0
        big = am_body("c")
        big["commonAnnotations"] = {"description": "d" * 60_000}
        r = client.post("/api/v1/alertmanager", content=json.dumps(big), headers=AUTH)
        assert r.status_code in (202, 503), r.text
        assert r.status_code != 500
        cfg.server.min_free_mb = 1
        filler.unlink()
        r = client.post("/api/v1/alertmanager", content=json.dumps(am_body("b")), headers=AUTH)
        assert r.status_code == 202, r.text
        assert client.get("/readyz").status_code == 200
        service.queue.process_alerts()
        assert {"a", "b"} <= {i.service for i in store.list_incidents()}
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
