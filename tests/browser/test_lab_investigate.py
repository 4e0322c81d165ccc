"""The notebook UI for real: JupyterLab (started here on a loopback port, isolated config and
data dirs) in headless Chromium through Playwright. Open a generated incident notebook, run
%investigate, see the proposal cell appear below, run it, and find the approval on %timeline.
A screenshot is saved to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import papermill
import pytest
import requests

from tests.kernel_ext.incident_fixture import WINDOW, make_bundle, open_incident, write_config

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _incident_notebook(home: Path, incident_id: str, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run a tiny runbook headlessly, as the runner does, into <home>/incidents/<ID>/notebook.ipynb."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('incident_id = ""\nbundle = ""\nwindow_start = ""\nwindow_end = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {incident_id}: checkout HighErrorRate"), params,
                nbformat.v4.new_code_cell("%load_ext incidentbook")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = home / "runbook.ipynb"
    nbformat.write(nb, src)
    out = home / "incidents" / incident_id / "notebook.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("INCIDENTBOOK_HEADLESS", "1")
    papermill.execute_notebook(str(src), str(out), cwd=str(home), progress_bar=False, kernel_name="python3",
                               parameters={"incident_id": incident_id, "bundle": str(bundle),
                                           "window_start": WINDOW[0], "window_end": WINDOW[1]})
    monkeypatch.delenv("INCIDENTBOOK_HEADLESS")
    return out


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`; `make system-deps`)")
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyterlab is not installed in this environment (pip install incidentbook[lab])")
    home = tmp_path / "home"
    home.mkdir()
    write_config(home)
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(home))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.chdir(home)
    incident_id = open_incident(home)
    notebook = _incident_notebook(home, incident_id, make_bundle(home / "bundle"), monkeypatch)

    dirs = {k: tmp_path / "lab-env" / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                                             "IPYTHONDIR", "HOME")}
    for d in dirs.values():
        d.mkdir(parents=True)
    no_toast = {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}
    app_settings = tmp_path / "lab-env" / "app-settings"
    app_settings.mkdir()
    (app_settings / "overrides.json").write_text(json.dumps(no_toast))
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, "INCIDENTBOOK_HOME": str(home), "USER": "alice"}
    env.pop("INCIDENTBOOK_HEADLESS", None)
    env.pop("JUPYTERHUB_USER", None)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}",
           f"--LabApp.app_settings_dir={app_settings}", "--ServerApp.open_browser=False"]
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
        yield {"url": url, "token": token, "home": home, "incident_id": incident_id,
               "path": notebook.relative_to(home).as_posix()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run_new_cell(page, code: str) -> None:  # type: ignore[no-untyped-def]
    """Type `code` into the empty last cell (or a new one below it) and run it in place (Ctrl+Enter)."""
    last = page.locator(".jp-Notebook .jp-Cell").last
    if last.locator(".cm-content").inner_text().strip():
        last.click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        last = page.locator(".jp-Notebook .jp-Cell").last
    last.locator(".cm-content").click()
    page.keyboard.type(code)
    page.keyboard.press("Control+Enter")


def test_investigate_propose_approve_in_jupyterlab(lab: dict[str, object]) -> None:
    from playwright.sync_api import expect, sync_playwright

    args = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab['url']}/lab/tree/{lab['path']}?token={lab['token']}")
            expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=40_000)
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=30_000)
            # Re-run the generated cells so this kernel has the injected parameters and the extension.
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            expect(page.get_by_text("incidentbook loaded (live)")).to_be_visible(timeout=30_000)

            _run_new_cell(page, "%investigate")
            proposal = page.locator(".jp-Notebook .jp-Cell", has_text="# proposal P1")
            expect(proposal).to_have_count(1, timeout=30_000)
            expect(page.locator(".incidentbook-board, .jp-OutputArea-output", has_text="Hypotheses").first).to_be_visible()
            # The proposal was not run for us: no execution count, no output.
            expect(proposal.locator(".jp-InputPrompt")).to_have_text("[ ]:")

            proposal.locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
            expect(proposal.locator(".jp-OutputArea-output").first).to_be_visible(timeout=30_000)
            expect(proposal.locator(".js-plotly-plot")).to_be_visible(timeout=30_000)  # the chart drew
            proposal.locator(".js-plotly-plot").screenshot(path=str(ARTIFACTS / "lab_promql_chart.png"))

            _run_new_cell(page, "%timeline --kind proposal_approved")
            expect(page.locator(".jp-OutputArea-output", has_text="alice ran proposal P1")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "lab_investigate_approve.png"), full_page=False)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab_investigate_failure.png"))
            raise
        finally:
            browser.close()

    from incidentbook.config import load_config
    from incidentbook.incidents import Store

    with Store.from_config(load_config()) as store:
        approvals = [e for e in store.timeline(str(lab["incident_id"])) if e.kind == "proposal_approved"]
    assert [(a.data["proposal_id"], a.data["who"], a.data["verbatim"]) for a in approvals] == [("P1", "alice", True)]
