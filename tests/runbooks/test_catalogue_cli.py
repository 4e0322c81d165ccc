"""`incidentbook runbooks new | test | suggest` end to end, through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BIN = Path(sys.executable).parent / "incidentbook"
ROOT = Path(__file__).resolve().parents[2]


def run(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INCIDENTBOOK_HOME"}
    return subprocess.run([str(BIN), *args], cwd=ws, capture_output=True, text=True, env=env, timeout=300)


def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    r = subprocess.run([str(BIN), "init", str(ws)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ws


def test_new_scaffolds_a_paired_runbook_that_matches_and_runs(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    r = run(ws, "runbooks", "new", "queue_backlog", "--alert", "QueueBacklog", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    nb_path, script = Path(doc["notebook"]), Path(doc["script"])
    assert nb_path == ws / "runbooks" / "queue_backlog.ipynb" and script.suffix == ".py"
    assert "# %% tags=[\"parameters\"]" in script.read_text() and "QueueBacklog" in script.read_text()
    listed = {rb["name"]: rb for rb in json.loads(run(ws, "runbooks", "list", "--json").stdout)["runbooks"]}
    assert listed["queue_backlog"]["match"] == {"alertname": "QueueBacklog"}
    assert listed["queue_backlog"]["origin"] == "workspace"
    assert run(ws, "runbooks", "check", "queue_backlog").returncode == 0
    # Standalone (sample parameters, no telemetry) it runs top to bottom.
    nb = nbformat.read(str(nb_path), as_version=4)
    NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(ws)}}).execute()
    again = run(ws, "runbooks", "new", "queue_backlog", "--alert", "QueueBacklog")
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_new_rejects_a_bad_alert_name(tmp_path: Path) -> None:
    r = run(workspace(tmp_path), "runbooks", "new", "x", "--alert", "not an alert")
    assert r.returncode == 2 and "QueueBacklog" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_runbooks_test_runs_the_runbooks_a_scenario_selects(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    r = run(ws, "runbooks", "test", "cache_hit_ratio_low", "--scenario", "kv-cache-break",
            "--keep", str(tmp_path / "keep"), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    (only,) = doc["runs"]
    assert only["runbook"] == "cache_hit_ratio_low" and only["status"] == "ok"
    assert only["alertname"] == "CacheHitRatioLow" and Path(only["notebook"]).is_file()


def test_suggest_turns_cells_the_responder_ran_into_a_runbook_diff(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    alert = json.loads((ROOT / "tests" / "fixtures" / "alerts" / "checkout_firing.json").read_text())
    for a in alert["alerts"]:  # an alert no catalogue runbook matches: the generic runbook runs
        a["labels"]["alertname"] = "CheckoutSlowSignups"
    alert["commonLabels"]["alertname"] = alert["groupLabels"]["alertname"] = "CheckoutSlowSignups"
    (ws / "alert.json").write_text(json.dumps(alert))
    r = run(ws, "ingest", "alert.json", "--json")
    assert r.returncode == 0, r.stderr
    (inc,) = json.loads(r.stdout)["incidents"]
    assert inc["runbook"] == "generic"
    nothing = run(ws, "runbooks", "suggest", inc["id"])
    assert nothing.returncode == 0 and "ran nothing beyond" in nothing.stdout

    # A responder adds two cells and runs the notebook in a live kernel (the extension records
    # every execution on the timeline); one cell is added but never run.
    nb_path = Path(inc["notebook"])
    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('signups = 41\nprint("signups per minute", signups)'))
    nb.cells.append(nbformat.v4.new_code_cell("print('checked the signup queue')"))
    env_home = {"INCIDENTBOOK_HOME": str(ws)}
    old = {k: os.environ.get(k) for k in env_home}
    os.environ.update(env_home)
    try:
        NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(ws)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    nb.cells.append(nbformat.v4.new_code_cell("print('typed but never run')"))
    nbformat.write(nb, str(nb_path))

    r = run(ws, "runbooks", "suggest", inc["id"], "--json", "--out", str(tmp_path / "change.diff"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["runbook"] == "generic"
    assert doc["cells"] == ['signups = 41\nprint("signups per minute", signups)',
                            "print('checked the signup queue')"]
    diff = doc["diff"]
    assert diff.startswith("--- a/runbooks/generic.py\n+++ b/runbooks/generic.py\n")
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert 'print("signups per minute", signups)' in added and "never run" not in diff
    assert not [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert (tmp_path / "change.diff").read_text() == diff
    # The diff applies to the runbook's jupytext text.
    import jupytext

    base = tmp_path / "generic.py"
    base.write_text(jupytext.writes(nbformat.read(str(ROOT / "runbooks" / "generic.ipynb"), as_version=4),
                                    fmt="py:percent"))
    patch = subprocess.run(["patch", "--dry-run", str(base), str(tmp_path / "change.diff")],
                           capture_output=True, text=True)
    assert patch.returncode == 0, patch.stdout + patch.stderr
