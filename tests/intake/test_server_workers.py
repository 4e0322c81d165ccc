"""Runbook workers: warm kernels keep run_runbook's semantics, a kill -9 mid-run resumes the
runbook after restart (never twice to completion), Slack notification, PostgreSQL shared queue."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.queue import WorkQueue
from incidentbook.intake.service import WORKER_LOST, IntakeService
from incidentbook.runner import build_parameters, read_runbook, run_runbook
from incidentbook.runner.pool import KernelPool
from tests.e2e.serveproc import TOKEN, make_serve
from tests.incidents.conftest import pg_cluster, pg_database  # noqa: F401 - fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _notebook(path: Path, cells: list[str], match: dict[str, str] | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('incident_id = "INC-TEST"\nalertname = "TestAlert"\nlabels = {}')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *[nbformat.v4.new_code_cell(c) for c in cells]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["incidentbook"] = {"title": path.stem, "match": match or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def pool() -> Any:
    with KernelPool(size=1) as p:
        yield p


def _params() -> dict[str, Any]:
    return build_parameters(incident_id="INC-20260314-0001", alertname="TestAlert",
                            starts_at="2026-03-14T10:00:00Z")


def test_warm_run_fails_like_run_runbook(pool: KernelPool, tmp_path: Path) -> None:
    rb = read_runbook(FIXTURES / "runbooks" / "raises.ipynb")
    warm = pool.run(rb, _params(), tmp_path / "warm.ipynb", cwd=tmp_path, cell_timeout_s=30)
    cold = run_runbook(rb, _params(), tmp_path / "cold.ipynb", cwd=tmp_path, cell_timeout_s=30)
    assert (warm.status, warm.cell_index, warm.ename, warm.evalue) == \
        (cold.status, cold.cell_index, cold.ename, cold.evalue) == ("failed", cold.cell_index, "RuntimeError", "upstream returned 503")
    nb = nbformat.read(str(tmp_path / "warm.ipynb"), as_version=4)
    assert nb.metadata["incidentbook"]["incident_id"] == "INC-20260314-0001"
    assert any("step 1 ran for INC-20260314-0001" in str(c.get("outputs")) for c in nb.cells)


def test_warm_run_times_out_and_kernels_never_share_state(pool: KernelPool, tmp_path: Path) -> None:
    rb = read_runbook(FIXTURES / "runbooks" / "timeout.ipynb")
    r = pool.run(rb, _params(), tmp_path / "t.ipynb", cwd=tmp_path, cell_timeout_s=1)
    assert r.status == "failed" and r.ename == "CellTimeoutError"
    setter = read_runbook(_notebook(tmp_path / "rb" / "set.ipynb", ["import os\nLEAK = os.getcwd()"]))
    checker = read_runbook(_notebook(tmp_path / "rb" / "check.ipynb",
                                     ["import os\nassert 'LEAK' not in globals(), 'state leaked'\nprint(os.getcwd())"]))
    assert pool.run(setter, _params(), tmp_path / "a" / "s.ipynb", cwd=tmp_path / "a", cell_timeout_s=30).ok
    out = pool.run(checker, _params(), tmp_path / "b" / "c.ipynb", cwd=tmp_path / "b", cell_timeout_s=30)
    assert out.ok, out.message
    nb = nbformat.read(str(tmp_path / "b" / "c.ipynb"), as_version=4)
    assert str((tmp_path / "b").resolve()) in str(nb.cells[-1].outputs)  # ran in the incident directory


def _wait(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill9_during_a_runbook_resumes_it_after_restart_and_it_completes_once(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    _notebook(home / "runbooks" / "slow.ipynb",
              ["import time\ntime.sleep(3)\nprint('slow runbook done for', incident_id)"], match={"alertname": "SlowOne"})
    server = make_serve(home, "[server]\nworkers = 1\nlease_s = 1.5\n").start()
    store = Store(f"sqlite:///{home / 'incidentbook.db'}")
    try:
        r = requests.post(server.url + "/api/v1/alerts", json={"alertname": "SlowOne", "service": "batch"},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 202
        inc = _wait(lambda: next(iter(store.list_incidents()), None), 20, "the incident")
        _wait(lambda: store.get_incident(inc.id).runbook_status == "running", 30, "the runbook to start")
        server.kill9()
        assert store.get_incident(inc.id).runbook_status == "running"
        server.start()
        _wait(lambda: store.get_incident(inc.id).runbook_status == "succeeded", 60, "the resumed runbook")
        runs = store.runs(inc.id)
        assert [(x.status, x.ename) for x in runs] == [("failed", WORKER_LOST), ("succeeded", "")]
        nb = nbformat.read(store.get_incident(inc.id).notebook, as_version=4)
        assert "slow runbook done for " + inc.id in str(nb.cells[-1].outputs)
        server.stop()
        server.start()  # a clean restart finds nothing left to do
        time.sleep(2)
        assert len(store.runs(inc.id)) == 2
    finally:
        server.stop()
        store.close()


def test_a_job_whose_incident_already_ran_is_not_run_again(tmp_path: Path) -> None:
    cfg = Config(home=tmp_path)
    store = Store.from_config(cfg)
    svc = IntakeService(cfg, store, run_runbooks=False)
    svc.submit("generic", json.dumps({"alertname": "Once"}))
    [done] = [svc.queue.process_next_alert()]
    run_id = store.start_run(done.incident_id, "generic")
    store.finish_run(run_id, "succeeded")
    job = svc.queue.claim_runbook()
    assert job is not None and svc.run_job(job) == "skipped"
    assert len(store.runs(done.incident_id)) == 1
    store.close()


class _SlackHook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _SlackHook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def test_slack_notification_carries_the_notebook_link_and_top_hypothesis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.intake.notify import slack_notifier
    from incidentbook.intake.server import notebook_url

    httpd = HTTPServer(("127.0.0.1", 0), _SlackHook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_SLACK_URL", f"http://127.0.0.1:{httpd.server_port}/services/T/B/X")
    cfg = Config(home=tmp_path)
    cfg.server.slack_webhook_env = "TEST_SLACK_URL"
    store = Store.from_config(cfg)
    try:
        svc = IntakeService(cfg, store, run_runbooks=False)
        svc.submit("generic", json.dumps({"alertname": "DiskFull", "service": "db", "severity": "critical"}))
        done = svc.queue.process_next_alert()
        assert done is not None
        iid = done.incident_id
        store.set_runbook(iid, "generic", str(cfg.incidents_dir / iid / "notebook.ipynb"))
        store.add_event(iid, "investigation", "rules: 1 hypothesis",
                        data={"hypotheses": [{"id": "H1", "title": "db volume filled by audit logs"}]})
        notify = slack_notifier(cfg, store, lambda i: notebook_url("http://lab:8888", cfg.home, i))
        assert notify is not None
        notify(iid)
        [msg] = _SlackHook.received
        text = json.dumps(msg)
        assert iid in msg["text"] and "db volume filled by audit logs" in text
        assert f"http://lab:8888/lab/tree/incidents/{iid}/notebook.ipynb" in text
    finally:
        httpd.shutdown()
        store.close()


@pytest.mark.slow
def test_postgres_queue_is_shared_by_several_workers(pg_database: str) -> None:  # noqa: F811
    stores = [Store(pg_database) for _ in range(3)]
    queues = [WorkQueue(s, worker=f"w{i}") for i, s in enumerate(stores)]
    try:
        for i in range(40):
            queues[0].enqueue_alert("generic", json.dumps({"alertname": f"A{i % 8}", "service": f"s{i}"}))
        results: list[Any] = []

        def work(q: WorkQueue) -> None:
            while (r := q.process_next_alert()) is not None:
                results.append(r)

        threads = [threading.Thread(target=work, args=(q,)) for q in queues]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r.item_id for r in results) == sorted(set(r.item_id for r in results))
        assert len(results) == 40 and queues[0].counts()["alert"] == {"done": 40}
        jobs: list[Any] = []
        claim_threads = [threading.Thread(target=lambda q=q: jobs.extend(
            j for j in iter(q.claim_runbook, None))) for q in queues]
        for t in claim_threads:
            t.start()
        for t in claim_threads:
            t.join(60)
        ids = [j.incident_id for j in jobs]
        assert len(ids) == 40 and len(set(ids)) == 40  # SKIP LOCKED: every job to exactly one worker
    finally:
        for s in stores:
            s.close()
