"""The `incidentbook` command end to end, through a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

BIN = Path(sys.executable).parent / "incidentbook"


def payload(group: str = "g1", alertname: str = "SignupsDropped", service: str = "checkout",
            n_alerts: int = 1, status: str = "firing") -> dict:
    alerts = [{
        "status": status,
        "labels": {"alertname": alertname, "service": service, "severity": "page",
                   "namespace": "shop", "pod": f"{service}-{i}"},
        "annotations": {"summary": f"{service} 5xx ratio above 5%", "runbook_url": "https://wiki.example/hre"},
        "startsAt": "2026-11-23T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=x", "fingerprint": f"{group}-{i:04d}",
    } for i in range(n_alerts)]
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="{alertname}",group="{group}"}}', "truncatedAlerts": 0,
        "status": status, "receiver": "incidentbook", "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "service": service, "severity": "page", "namespace": "shop"},
        "commonAnnotations": {"summary": f"{service} 5xx ratio above 5%"},
        "externalURL": "http://alertmanager.example:9093", "alerts": alerts,
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    r = subprocess.run([str(BIN), "init", str(ws)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ws


def run(ws: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INCIDENTBOOK_HOME"}
    return subprocess.run([str(BIN), *args], cwd=ws, capture_output=True, text=True, input=stdin,
                          env=env, timeout=300)


def write(ws: Path, name: str, doc: dict | str) -> Path:
    p = ws / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def assert_one_line_error(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_help_lists_the_contract_commands() -> None:
    r = subprocess.run([str(BIN), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("init", "ingest", "incidents", "runbooks"):
        assert cmd in r.stdout


def test_init_scaffolds_and_refuses_to_overwrite(workspace: Path) -> None:
    toml = (workspace / "incidentbook.toml").read_text()
    assert "[server]" in toml and "token_env" in toml and "# " in toml
    assert (workspace / "runbooks").is_dir() and (workspace / "library").is_dir()
    r = subprocess.run([str(BIN), "init", str(workspace)], capture_output=True, text=True)
    assert_one_line_error(r, 2, "already exists", "--force")


def test_ingest_opens_incident_with_executed_notebook(workspace: Path) -> None:
    # An alert no catalogue runbook matches gets the generic fallback.
    alert = write(workspace, "alert.json", payload())
    r = run(workspace, "ingest", str(alert), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (inc,) = doc["incidents"]
    assert set(inc) >= {"id", "notebook", "runbook", "status", "runbook_status", "created"}
    assert inc["id"].startswith("INC-") and inc["status"] == "open"
    assert inc["runbook"] == "generic" and inc["runbook_status"] == "succeeded"
    nb_path = Path(inc["notebook"])
    assert nb_path == workspace / "incidents" / inc["id"] / "notebook.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "every code cell ran"
    text = json.dumps([c.get("outputs", []) for c in code])
    assert "SignupsDropped" in text and "checkout" in text and "wiki.example/hre" in text
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)


def test_renotification_updates_the_same_incident(workspace: Path) -> None:
    first = json.loads(run(workspace, "ingest", str(write(workspace, "a.json", payload())), "--json").stdout)
    again = run(workspace, "ingest", str(write(workspace, "b.json", payload(n_alerts=2))), "--json")
    assert again.returncode == 0, again.stderr
    (inc,) = json.loads(again.stdout)["incidents"]
    assert inc["id"] == first["incidents"][0]["id"]
    listed = json.loads(run(workspace, "incidents", "list", "--json").stdout)["incidents"]
    assert [i["id"] for i in listed] == [inc["id"]]
    shown = json.loads(run(workspace, "incidents", "show", inc["id"], "--json").stdout)
    assert len(shown["alerts"]) == 2
    kinds = [e["kind"] for e in shown["timeline"]]
    assert "incident_opened" in kinds and "runbook_finished" in kinds and kinds.count("alert_received") >= 2


def test_stdin_and_plain_output(workspace: Path) -> None:
    r = run(workspace, "ingest", "-", stdin=json.dumps(payload(group="stdin")))
    assert r.returncode == 0, r.stderr
    assert "INC-" in r.stdout and "notebook.ipynb" in r.stdout


def test_close_and_close_again(workspace: Path) -> None:
    inc = json.loads(run(workspace, "ingest", str(write(workspace, "a.json", payload())), "--json").stdout)["incidents"][0]
    r = run(workspace, "incidents", "close", inc["id"], "--summary", "cache restarted")
    assert r.returncode == 0, r.stderr
    assert json.loads(run(workspace, "incidents", "list", "--json").stdout)["incidents"] == []
    closed = json.loads(run(workspace, "incidents", "show", inc["id"], "--json").stdout)
    assert closed["status"] == "closed" and closed["summary"] == "cache restarted"
    assert_one_line_error(run(workspace, "incidents", "close", inc["id"]), 2, "already closed")
    assert_one_line_error(run(workspace, "incidents", "show", "INC-19990101-0001"), 2, "INC-19990101-0001")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "JSON"),
        (json.dumps({k: v for k, v in payload().items() if k != "alerts"}), "alerts"),
        (json.dumps({**payload(), "version": "3"}), "version"),
        (json.dumps({**payload(), "alerts": []}), "alerts"),
        (json.dumps({**payload(), "padding": "x" * (5 * 1024 * 1024 + 10)}), "MB"),
    ],
    ids=["invalid-json", "missing-alerts", "unsupported-version", "empty-alerts", "too-large"],
)
def test_bad_payloads_are_rejected_and_lose_nothing(workspace: Path, content: str, needle: str) -> None:
    good = json.loads(run(workspace, "ingest", str(write(workspace, "good.json", payload())), "--json").stdout)
    r = run(workspace, "ingest", str(write(workspace, "bad.json", content)))
    assert_one_line_error(r, 2, needle)
    listed = json.loads(run(workspace, "incidents", "list", "--json").stdout)["incidents"]
    assert [i["id"] for i in listed] == [good["incidents"][0]["id"]]


def _runbook(ws: Path, name: str, alertname: str, cells: list, parameters: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["incidentbook"] = {"title": name, "match": {"alertname": alertname}}
    if parameters:
        p = nbformat.v4.new_code_cell('incident_id = ""\nalertname = ""')
        p.metadata["tags"] = ["parameters"]
        nb.cells.append(p)
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, ws / "runbooks" / f"{name}.ipynb")


@pytest.mark.parametrize(
    ("cells", "ename"),
    [
        (["x = 1", "def broken(:\n    pass"], "SyntaxError"),
        (["x = 1", "raise RuntimeError('upstream said no')"], "RuntimeError"),
        (["x = 1", "import os; os._exit(1)"], "DeadKernelError"),
    ],
    ids=["syntax-error", "raises", "kernel-dies"],
)
def test_failing_runbook_leaves_partial_notebook_and_marks_incident(workspace: Path, cells: list, ename: str) -> None:
    _runbook(workspace, "broken", "Broken", cells)
    r = run(workspace, "ingest", str(write(workspace, "a.json", payload(alertname="Broken"))), "--json")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "broken" in r.stderr and "partial notebook" in r.stderr
    (inc,) = json.loads(r.stdout)["incidents"]
    assert inc["runbook"] == "broken" and inc["runbook_status"] == "failed"
    nb = nbformat.read(inc["notebook"], as_version=4)
    assert any(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "cells before the failure ran"
    shown = json.loads(run(workspace, "incidents", "show", inc["id"], "--json").stdout)
    assert shown["runbook_error"]["ename"] == ename
    assert "runbook_failed" in [e["kind"] for e in shown["timeline"]]


def test_runbook_without_parameters_cell_is_reported(workspace: Path) -> None:
    _runbook(workspace, "noparams", "NoParams", ["x = 1"], parameters=False)
    check = run(workspace, "runbooks", "check", "noparams", "--json")
    assert check.returncode == 1
    (rb,) = json.loads(check.stdout)["runbooks"]
    assert not rb["ok"] and any("parameters" in p for p in rb["problems"])
    r = run(workspace, "ingest", str(write(workspace, "a.json", payload(alertname="NoParams"))), "--json")
    assert_one_line_error(r, 2, "parameters")
    listed = json.loads(run(workspace, "incidents", "list", "--json").stdout)["incidents"]
    assert len(listed) == 1 and listed[0]["runbook_status"] == "failed", "the alert is kept and the failure recorded"


def test_runbooks_list_shows_workspace_override(workspace: Path) -> None:
    _runbook(workspace, "generic", "Whatever", ["x = 1"])
    doc = json.loads(run(workspace, "runbooks", "list", "--json").stdout)
    generic = [rb for rb in doc["runbooks"] if rb["name"] == "generic"]
    assert len(generic) == 1 and generic[0]["origin"] == "workspace"
    r = run(workspace, "runbooks", "list")
    assert r.returncode == 0 and "generic" in r.stdout


def test_scenario_list_and_generate_then_ingest_with_bundle(tmp_path: Path, workspace: Path) -> None:
    listed = json.loads(run(workspace, "scenario", "list", "--json").stdout)["scenarios"]
    names = {s["name"] for s in listed}
    assert len(names) >= 10 and all({"name", "story", "root_cause_service", "fault_kind"} <= set(s) for s in listed)
    r = run(workspace, "scenario", "generate", "bad-deploy", str(tmp_path / "b"), "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    gen = json.loads(r.stdout)
    firing = [p for p in gen["payloads"] if json.loads(Path(p).read_text())["status"] == "firing"]
    ing = run(workspace, "ingest", firing[0], "--bundle", gen["bundle"], "--json")
    assert ing.returncode == 0, ing.stderr
    (inc,) = json.loads(ing.stdout)["incidents"]
    shown = json.loads(run(workspace, "incidents", "show", inc["id"], "--json").stdout)
    assert shown["bundle"] == str(Path(gen["bundle"]).resolve())
    imported = run(workspace, "bundle", "import", gen["bundle"], "--json")
    assert imported.returncode == 0, imported.stderr
    assert Path(json.loads(imported.stdout)["bundle"]).is_dir()
    assert_one_line_error(run(workspace, "bundle", "import", gen["bundle"]), 2, "already imported")
    assert_one_line_error(run(workspace, "scenario", "generate", "no-such-thing", str(tmp_path / "x")), 2, "kv-cache-break")
    assert_one_line_error(run(workspace, "bundle", "import", str(tmp_path)), 2, "manifest.json")


def test_demo_no_lab_produces_an_executed_incident_notebook(tmp_path: Path) -> None:
    # An INCIDENTBOOK_HOME in the user's shell does not pull the demo's state elsewhere.
    env = {**os.environ, "INCIDENTBOOK_HOME": str(tmp_path / "elsewhere")}
    r = subprocess.run([str(BIN), "demo", "--no-lab", "--home", str(tmp_path / "demo"), "--json"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["scenario"] == "kv-cache-break"
    (inc,) = doc["incidents"]
    assert inc["runbook_status"] == "succeeded" and Path(inc["notebook"]).is_file()
    listed = subprocess.run([str(BIN), "incidents", "list", "--json"], cwd=tmp_path / "demo",
                            capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "INCIDENTBOOK_HOME"})
    assert [i["id"] for i in json.loads(listed.stdout)["incidents"]] == [inc["id"]], "the demo home is a workspace"
    assert not (tmp_path / "elsewhere").exists()


def test_eval_of_an_unconfigured_investigator_is_skipped_with_the_reason(workspace: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "INCIDENTBOOK_HOME")}
    r = subprocess.run([str(BIN), "eval", "--investigator", "claude", "--scenario", "kv-cache-break",
                        "--seeds", "0", "--json"], cwd=workspace, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "ANTHROPIC_API_KEY" in doc["skipped"] and "skipped" in r.stderr


def test_a_catalogue_alert_gets_its_own_runbook(workspace: Path) -> None:
    r = run(workspace, "ingest", str(write(workspace, "a.json", payload(alertname="HighErrorRate"))), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["incidents"][0]["runbook"] == "high_error_rate"
