"""`incidentbook trust ledger|report` through a subprocess, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from incidentbook.config import load_config
from incidentbook.incidents import Store
from incidentbook.postmortems import close_incident
from tests.trust.timelines import hypothesis, investigate, open_incident, proposal, run

BIN = Path(sys.executable).parent / "incidentbook"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTBOOK_HOME": str(home)}
    return subprocess.run([str(BIN), "trust", *args], cwd=home, capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture
def workspace(home: Path) -> Path:
    """Two closed incidents: rules (3 proposals, 1 run) and claude:m1 (1 proposal, run)."""
    with Store.from_config(load_config()) as store:
        a = open_incident(store, "a")
        ps = [proposal(f"P{i}", "H1", f"%promql up{i}") for i in (1, 2, 3)]
        investigate(store, a, "rules", "", [hypothesis("H1", "checkout", "bad_deploy", ps)])
        run(store, a, ps[0])
        close_incident(store, a, "bob", root_cause="H1")
        b = open_incident(store, "b")
        q = proposal("P1", "H1", "%changes")
        investigate(store, b, "claude", "m1", [hypothesis("H1", "cart", "config_change", [q])])
        run(store, b, q)
        close_incident(store, b, "bob", root_cause="cart config typo")
    return home


def test_trust_ledger_json_and_table(workspace: Path) -> None:
    r = cli(workspace, "ledger", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rates = {(x["investigator"], x["model"]): x for x in doc["rates"]}
    assert rates[("rules", "")]["acceptance_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert rates[("rules", "")]["top_was_root_cause"] == 1
    assert rates[("claude", "m1")]["acceptance_rate"] == 1.0
    assert rates[("claude", "m1")]["top_judged"] == 0  # closed with free text: no known cause to compare
    assert doc["totals"] == {"incidents": 2, "proposals": 4, "verbatim": 2, "edited": 0, "ignored": 2,
                             "refuted": 0, "pending": 0, "acceptance_rate": 0.5}
    r = cli(workspace, "ledger")
    assert r.returncode == 0 and "ACCEPTED" in r.stdout and "33%" in r.stdout and "100%" in r.stdout


def test_trust_report_writes_an_executed_notebook(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "review" / "q3.ipynb"
    r = cli(workspace, "report", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["path"] == str(out) and Path(doc["ledger"]).is_file() and doc["executed"]
    nb = nbformat.read(out, as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "claude (m1)" in shown and "rules" in shown and "50%" in shown


def test_trust_bad_input_is_one_line(home: Path) -> None:
    for args, hint in ((("ledger", "--since", "last week"), "YYYY-MM-DD"),
                       (("report", "--out", "review.html", "--no-execute"), ".ipynb")):
        r = cli(home, *args)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr and hint in r.stderr
