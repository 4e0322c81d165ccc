"""End to end with real components: Prometheus evaluates the scenario rules on backfilled data,
Alertmanager posts to `incidentbook serve`, an executed incident notebook appears.

The scenario is generated with its window ending now (plus a little, so the data does not go
stale while the test runs); the rule file is the shipped one with `for:` set to 0s and a short
evaluation interval so it fires in seconds rather than minutes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import requests

from incidentbook.incidents import Store
from incidentbook.scenarios import RULES_FILE, generate
from incidentbook.telemetry.bundle import open_bundle
from tests.e2e.serveproc import TOKEN, make_serve
from tests.support.promserver import PROMETHEUS, backfill, binaries_available, free_port

pytestmark = pytest.mark.slow
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def _binary(name: str, default: str) -> str | None:
    return default if Path(default).exists() else shutil.which(name)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready: {log.read_text(errors='replace')[-2000:]}")


def test_prometheus_rules_fire_through_alertmanager_into_an_executed_notebook(tmp_path: Path) -> None:
    reason = binaries_available()
    am_bin = _binary("prometheus-alertmanager", ALERTMANAGER) or _binary("alertmanager", "/usr/bin/alertmanager")
    if reason or am_bin is None:
        pytest.skip(reason or "prometheus-alertmanager is not installed (Debian package; `make system-deps`)")
    t0 = time.monotonic()
    gen = generate("kv-cache-break", tmp_path / "bundle", seed=0, duration="45min", end=time.time() + 180)
    bundle = open_bundle(gen.bundle_dir)

    # incidentbook serve, with the bundle to replay (and its topology for correlation)
    server = make_serve(tmp_path / "ws", "[server]\nworkers = 1\n", bundle=gen.bundle_dir).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Alertmanager: one webhook receiver with the bearer token read from a file
        am_dir = tmp_path / "am"
        am_dir.mkdir()
        (am_dir / "token").write_text(TOKEN)
        (am_dir / "am.yml").write_text(
            "route:\n  receiver: incidentbook\n  group_by: [alertname, service]\n"
            "  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: incidentbook\n    webhook_configs:\n"
            f"      - url: {server.url}/api/v1/alertmanager\n        send_resolved: true\n"
            "        http_config:\n          authorization:\n            type: Bearer\n"
            f"            credentials_file: {am_dir / 'token'}\n")
        am_port = free_port()
        am_log = am_dir / "am.log"
        with am_log.open("wb") as log:
            procs.append(subprocess.Popen(
                [am_bin, f"--config.file={am_dir / 'am.yml'}", f"--storage.path={am_dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                 "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{am_port}/-/ready", procs[-1], am_log)

        # Prometheus: the scenario's data backfilled with promtool, its rules, alerting to Alertmanager
        prom_dir = tmp_path / "prom"
        (prom_dir / "data").mkdir(parents=True)
        backfill(prom_dir, bundle.metrics, prom_dir / "data")
        rules = RULES_FILE.read_text()
        rules = re.sub(r"(?m)^(\s+)for: \S+", r"\1for: 0s", rules)
        rules = re.sub(r"(?m)^(\s+)interval: \S+", r"\1interval: 2s", rules)
        (prom_dir / "rules.yml").write_text(rules)
        (prom_dir / "prometheus.yml").write_text(
            "global:\n  evaluation_interval: 2s\n  scrape_interval: 15s\n"
            "rule_files:\n  - rules.yml\n"
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
            "scrape_configs: []\n")
        prom_port = free_port()
        prom_log = prom_dir / "prometheus.log"
        with prom_log.open("wb") as log:
            procs.append(subprocess.Popen(
                [_binary("prometheus", PROMETHEUS) or PROMETHEUS, f"--config.file={prom_dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={prom_dir / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                 "--storage.tsdb.retention.time=100y", "--log.level=warn",
                 # alerts fired before the notifier discovers Alertmanager are re-sent soon, not in 1 min
                 "--rules.alert.resend-delay=2s"],
                stdout=log, stderr=subprocess.STDOUT, cwd=prom_dir))
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", procs[-1], prom_log)

        t_ready, t_wall = time.monotonic(), time.time()
        store = Store(f"sqlite:///{tmp_path / 'ws' / 'incidentbook.db'}")
        try:
            deadline = time.monotonic() + 90
            done = []
            while time.monotonic() < deadline:
                done = [i for i in store.list_incidents() if i.runbook_status in ("succeeded", "failed")]
                if done:
                    break
                time.sleep(0.5)
            firing = requests.get(f"http://127.0.0.1:{prom_port}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            assert done, (f"no executed notebook within 90 s; Prometheus alerts: {len(firing)}; "
                          f"serve log: {server.log()[-2000:]}")
            inc = done[0]
            first = min(i.created for i in store.list_incidents())
            print(f"\nset-up {t_ready - t0:.1f}s, first incident after {first.timestamp() - t_wall:.1f}s, "
                  f"notebook after {time.monotonic() - t_ready:.1f}s")
            assert inc.runbook_status == "succeeded", inc.runbook_error
            payload = store.payloads(inc.id)[0]
            assert f':{am_port}"' in payload  # Alertmanager's externalURL: it came through Alertmanager
            nb = nbformat.read(inc.notebook, as_version=4)
            assert nb.metadata["incidentbook"]["incident_id"] == inc.id
            assert nb.metadata["incidentbook"]["parameters"]["bundle"] == str(gen.bundle_dir.resolve())
            executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
            assert len(executed) >= 3
            # the alert groups Prometheus fired, on several services, collapse into fewer incidents
            services = {a["labels"].get("service") for a in firing if a["state"] == "firing"}
            assert len(services) >= 2 and gen.ground_truth["root_cause_service"] in services
        finally:
            store.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()
