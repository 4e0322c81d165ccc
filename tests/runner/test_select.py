"""Runbook selection: the most specific match wins, `generic` is the fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from incidentbook.errors import RunbookError
from incidentbook.runner import Runbook, load_runbooks, select_runbook

WriteRunbook = Callable[..., Path]

ALERT = {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical",
         "namespace": "shop"}


def rb(name: str, match: dict[str, str] | None = None, match_re: dict[str, str] | None = None,
       priority: int = 0) -> Runbook:
    return Runbook(name=name, path=Path(f"/nowhere/{name}.ipynb"), match=match or {},
                   match_re=match_re or {}, priority=priority)


def test_exact_match_beats_regex_with_same_number_of_conditions() -> None:
    books = [rb("generic"), rb("by_regex", match_re={"service": "check.*"}),
             rb("by_exact", match={"service": "checkout"})]
    assert select_runbook(ALERT, books).name == "by_exact"


def test_more_conditions_beat_fewer_even_if_regex() -> None:
    books = [rb("one_exact", match={"service": "checkout"}),
             rb("two_regex", match_re={"service": "check.*", "alertname": "High.*"})]
    assert select_runbook(ALERT, books).name == "two_regex"


def test_priority_breaks_ties_then_name() -> None:
    books = [rb("b_low", match={"service": "checkout"}, priority=1),
             rb("a_high", match={"service": "checkout"}, priority=5)]
    assert select_runbook(ALERT, books).name == "a_high"
    tied = [rb("zeta", match={"service": "checkout"}), rb("alpha", match={"service": "checkout"})]
    assert select_runbook(ALERT, tied).name == "alpha"
    assert select_runbook(ALERT, list(reversed(tied))).name == "alpha"


def test_regex_must_match_the_whole_value() -> None:
    books = [rb("generic"), rb("partial", match_re={"service": "check"})]
    assert select_runbook(ALERT, books).name == "generic"
    books.append(rb("full", match_re={"service": "check(out|in)"}))
    assert select_runbook(ALERT, books).name == "full"


def test_all_conditions_must_hold_and_missing_labels_do_not_match() -> None:
    books = [rb("generic"), rb("wrong_sev", match={"service": "checkout", "severity": "info"}),
             rb("needs_cluster", match_re={"cluster": ".*"})]
    assert select_runbook(ALERT, books).name == "generic"


def test_runbook_without_conditions_is_not_a_catch_all() -> None:
    books = [rb("aaa_notes"), rb("generic")]
    assert select_runbook(ALERT, books).name == "generic"


def test_no_match_and_no_generic_names_the_alert_and_the_fix() -> None:
    books = [rb("payments", match={"service": "payments"})]
    with pytest.raises(RunbookError) as info:
        select_runbook({"alertname": "Foo"}, books)
    assert str(info.value) == (
        "No runbook matches alertname='Foo'; add runbooks/foo.ipynb or a generic runbook")
    assert info.value.exit_code == 2


def test_workspace_runbook_overrides_package_runbook_by_name(
        tmp_path: Path, write_runbook: WriteRunbook) -> None:
    pkg, ws = tmp_path / "pkg", tmp_path / "ws"
    write_runbook("generic", pkg, title="Package generic")
    write_runbook("checkout", pkg, title="Package checkout", match={"service": "checkout"})
    write_runbook("checkout", ws, title="Team checkout", match={"service": "checkout"})
    books = load_runbooks(package_dir=pkg, workspace_dir=ws)
    assert [(b.name, b.origin) for b in books] == [("checkout", "workspace"),
                                                   ("generic", "package")]
    chosen = select_runbook(ALERT, books)
    assert (chosen.title, chosen.path) == ("Team checkout", ws / "checkout.ipynb")


def test_load_reads_metadata_and_uses_config_workspace(
        tmp_path: Path, write_runbook: WriteRunbook, monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.config import load_config

    (tmp_path / "incidentbook.toml").write_text('[runner]\nrunbooks_dir = "x"\n')
    write_runbook("db", tmp_path / "x", title="Database", match_re={"alertname": "Postgres.*"},
                  priority=3, owner="team-db", description="Connections and locks")
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    cfg = load_config(tmp_path)
    books = {b.name: b for b in load_runbooks(cfg)}
    db = books["db"]
    assert (db.title, db.match_re, db.priority, db.owner, db.description, db.origin) == (
        "Database", {"alertname": "Postgres.*"}, 3, "team-db", "Connections and locks",
        "workspace")
    # The package's own generic runbook is there too, and catches everything else.
    assert books["generic"].origin == "package"
    assert select_runbook({"alertname": "PostgresDown"}, books.values()).name == "db"
    assert select_runbook({"alertname": "DiskFull"}, books.values()).name == "generic"


def test_broken_workspace_runbook_is_listed_but_never_selected(
        tmp_path: Path, write_runbook: WriteRunbook) -> None:
    ws = tmp_path / "ws"
    write_runbook("generic", ws)
    (ws / "checkout.ipynb").write_text("{ not json")
    books = load_runbooks(package_dir=tmp_path / "empty", workspace_dir=ws)
    broken = next(b for b in books if b.name == "checkout")
    assert "not valid notebook JSON" in broken.error
    assert select_runbook(ALERT, books).name == "generic"


def test_installed_wheel_layout_finds_packaged_runbooks(tmp_path: Path) -> None:
    # A wheel carries runbooks/ at incidentbook/_data/runbooks (pyproject force-include).
    import shutil
    import subprocess
    import sys

    import incidentbook

    site = tmp_path / "site"
    pkg = Path(incidentbook.__file__).parent
    shutil.copytree(pkg, site / "incidentbook", ignore=shutil.ignore_patterns("__pycache__"))
    data = site / "incidentbook" / "_data" / "runbooks"
    shutil.copytree(pkg.parent / "runbooks", data)
    code = ("import incidentbook.runner as r, pathlib; "
            "print(r.package_data_dir('runbooks')); "
            "print([b.name for b in r.load_runbooks(workspace_dir=pathlib.Path('/none'))])")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split("\n")
    assert out[0] == str(data)
    assert "'generic'" in out[1]
