"""Approving a write in real JupyterLab (headless Chromium through Playwright).

Run All on an incident notebook with a write proposal executes nothing and says why; the
Approve link under the preview opens the server extension's page, whose Approve button runs it
once as the user the Jupyter server authenticated; running the cell again does not run it again.
The broker is real (Unix socket); the cluster is the real `kubernetes` client against the
loopback kube-apiserver stand-in (tests/actions/kubeapi.py; no kube-apiserver binary here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

from incidentbook.actions.broker import Broker, BrokerServer, socket_path
from incidentbook.config import load_config
from tests.actions.kubeapi import KubeAPI
from tests.browser.test_lab_investigate import ARTIFACTS, CHROMIUM, _free_port, _incident_notebook
from tests.kernel_ext.incident_fixture import make_bundle, open_incident, write_config

pytestmark = pytest.mark.slow
WRITE = '# proposal P7: restart checkout\nib.act.restart("checkout", namespace="shop", reason="stuck threads")'


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`; `make system-deps`)")
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyterlab is not installed in this environment (pip install incidentbook[lab])")
    home = tmp_path / "home"
    home.mkdir()
    kube = KubeAPI().__enter__()
    kube.add("shop", "checkout", replicas=3)
    write_config(home, f'\n[actions]\nenvironment = "staging"\nkubeconfig = "{kube.kubeconfig(tmp_path / "kc")}"\n'
                       '[actions.environments.staging]\nnamespaces = ["shop"]\nactions = ["restart"]\n')
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(home))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.chdir(home)
    incident_id = open_incident(home)
    notebook = _incident_notebook(home, incident_id, make_bundle(home / "bundle"), monkeypatch)
    nb = nbformat.read(notebook, as_version=4)
    cell = nbformat.v4.new_code_cell(WRITE)
    cell.metadata["incidentbook"] = {"proposal": {"id": "P7", "kind": "write", "rationale": "stuck threads"}}
    nb.cells.append(cell)
    nbformat.write(nb, notebook)

    relay = secrets.token_urlsafe(24)
    broker = Broker.from_config(load_config(), relay_token=relay)
    server = BrokerServer(broker, socket_path(home))
    server.serve_in_thread()

    dirs = {k: tmp_path / "lab-env" / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
                                                           "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "HOME")}
    for d in dirs.values():
        d.mkdir(parents=True)
    settings = tmp_path / "lab-env" / "app-settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(
        {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}))
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, "INCIDENTBOOK_HOME": str(home), "USER": "alice",
           "INCIDENTBOOK_RELAY_TOKEN": relay}
    env.pop("INCIDENTBOOK_HEADLESS", None)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}", f"--LabApp.app_settings_dir={settings}",
           "--ServerApp.jpserver_extensions=incidentbook.actions.labext=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {"url": url, "token": token, "path": notebook.relative_to(home).as_posix(), "kube": kube,
               "broker": broker, "log": tmp_path / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        server.close()
        kube.__exit__(None, None, None)


def test_run_all_executes_nothing_and_approve_runs_once(lab: dict[str, object]) -> None:
    from playwright.sync_api import expect, sync_playwright

    kube: KubeAPI = lab["kube"]  # type: ignore[assignment]
    broker: Broker = lab["broker"]  # type: ignore[assignment]

    def writes() -> int:
        return len([r for r in kube.requests if r[0] == "PATCH" and r[2].get("dryRun") != "All"])

    args = ["--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        try:
            page.goto(f"{lab['url']}/lab/tree/{lab['path']}?token={lab['token']}")
            expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=40_000)
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=30_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            cell = page.locator(".jp-Notebook .jp-Cell", has_text="# proposal P7")
            expect(cell.locator(".jp-OutputArea-output", has_text="Running this cell does not approve it")
                   ).to_be_visible(timeout=60_000)
            assert writes() == 0 and [a.status for a in broker.list()] == ["pending"]
            page.screenshot(path=str(ARTIFACTS / "lab_approve_pending.png"))

            with ctx.expect_page() as popup:
                cell.get_by_role("link", name="Review and approve").click()
            approve = popup.value
            expect(approve.locator("#what")).to_contain_text("rolling restart of deployment shop/checkout")
            approve.locator("#approve").click()
            expect(approve.locator("#note")).to_contain_text("executed", timeout=30_000)
            approve.screenshot(path=str(ARTIFACTS / "lab_approve_done.png"))
            assert writes() == 1
            (a,) = broker.list()
            assert a.status == "executed" and [p["via"] for p in a.approvals] == ["lab"]
            # Back in the notebook: re-running the approved cell does not run it again.
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
            expect(cell.locator(".jp-OutputArea-output", has_text="does not run again")).to_be_visible(timeout=30_000)
            assert writes() == 1
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab_approve_failure.png"))
            raise
        finally:
            browser.close()
