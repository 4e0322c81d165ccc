"""`incidentbook audit verify`: a byte changed, a line dropped, two lines swapped -> exit 1 naming the entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from incidentbook.actions import AuditLog


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCIDENTBOOK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "incidentbook.cli", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace whose audit log the broker wrote: keyed, with its checkpoint in the store."""
    from incidentbook.actions.broker import audit_log_for
    from incidentbook.config import load_config

    monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path))
    log = audit_log_for(load_config(start=tmp_path))
    for i in range(5):
        log.append("approved", user="alice", action_id=f"ACT-{i}", summary=f"restart shop/svc{i}")
    return tmp_path


def lines(home: Path) -> list[str]:
    return (home / "audit.jsonl").read_text().splitlines(keepends=True)


def test_intact_log_verifies(home: Path) -> None:
    proc = run(home, "audit", "verify", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["entries"] == 5


def test_changed_byte(home: Path) -> None:
    ls = lines(home)
    ls[2] = ls[2].replace("svc2", "svc9")
    (home / "audit.jsonl").write_text("".join(ls))
    proc = run(home, "audit", "verify")
    assert proc.returncode == 1 and "broken at entry 3" in proc.stdout and "modified" in proc.stdout


def test_dropped_line(home: Path) -> None:
    ls = lines(home)
    del ls[1]
    (home / "audit.jsonl").write_text("".join(ls))
    proc = run(home, "audit", "verify", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["first_bad"] == 2 and not doc["ok"]


def test_swapped_lines(home: Path) -> None:
    ls = lines(home)
    ls[3], ls[4] = ls[4], ls[3]
    (home / "audit.jsonl").write_text("".join(ls))
    proc = run(home, "audit", "verify", "--path", str(home / "audit.jsonl"))
    assert proc.returncode == 1 and "broken at entry 4" in proc.stdout


def test_autonomy_check_grant_and_veto_cli(home: Path) -> None:
    (home / "incidentbook.toml").write_text('[actions]\nenvironment = "staging"\n')
    (home / "policy.toml").write_text('[[rules]]\nenvironment = "staging"\nmode = "cooldown"\ncooldown_s = 60\n'
                                      'author = "incidentbook"\ntarget = "shop/checkout"\n')
    who = ("--author", "incidentbook", "--target", "shop/checkout")
    assert json.loads(run(home, "autonomy", "check", "restart", "--severity", "warning", "--json").stdout)["mode"] \
        == "propose"  # no author and target named: a person decides
    proc = run(home, "autonomy", "check", "restart", "--severity", "warning", "--json", *who)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "cooldown"
    proc = run(home, "autonomy", "grant", "restart", "--environment", "staging", "--mode", "auto", "--for", "2h",
               "--reason", "game day", *who)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(run(home, "autonomy", "check", "restart", "--json", *who).stdout)
    assert d["mode"] == "auto" and d["grant"]
    assert AuditLog(home / "audit.jsonl").entries()[-1]["event"] == "autonomy_grant"
    proc = run(home, "autonomy", "veto", "AUTO-NOPE")
    assert proc.returncode == 2 and "no autonomous action AUTO-NOPE" in proc.stderr
    proc = run(home, "audit", "verify", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["keyed"] and json.loads(proc.stdout)["anchored"], proc.stdout
