"""`library add` is atomic: a failed add leaves the library as it was and a re-run succeeds.

A real git repository; the commit failure is a real `pre-commit` hook that refuses, and the
reported case is an incident whose title holds a NUL (stored before intake refused them).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.alertmanager import AlertmanagerPayload
from incidentbook.postmortems import Library
from incidentbook.postmortems.library import LibraryError
from tests.reliability.conftest import am_body


def _closed_incident(tmp_path: Path, title: str) -> tuple[Config, Store, str]:
    cfg = Config(home=tmp_path / "home")
    cfg.library.path = str(tmp_path / "library")
    store = Store.from_config(cfg)
    doc = am_body("checkout")
    doc["commonAnnotations"] = {"summary": title}
    # model_validate, not parse_alertmanager: this is data from before the boundary checks.
    iid = store.record_alerts(AlertmanagerPayload.model_validate(doc)).incident.id
    store.close_incident(iid, "sre-alice", summary="rolled back")
    draft = cfg.incidents_dir / iid / "postmortem.ipynb"
    draft.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Summary\nrolled back")]), draft)
    return cfg, store, iid


def _git(lib: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(lib), *args], capture_output=True, text=True, check=True).stdout


def _snapshot(lib: Path) -> dict[str, Any]:
    # _static/ is an ignored cache of the plotting library (not part of any entry).
    files = {str(p.relative_to(lib)): p.read_bytes() for p in lib.rglob("*")
             if p.is_file() and ".git" not in p.parts and "_static" not in p.parts}
    return {"files": files, "status": _git(lib, "status", "--porcelain"), "head": _git(lib, "rev-parse", "HEAD")}


def _refuse_commits(lib: Path, refuse: bool) -> None:
    hook = lib / ".git" / "hooks" / "pre-commit"
    if refuse:
        hook.write_text("#!/bin/sh\necho 'refused by hook' >&2\nexit 1\n")
        hook.chmod(0o755)
    else:
        hook.unlink()


def test_a_nul_in_the_title_archives_and_the_commit_message_is_clean(tmp_path: Path) -> None:
    cfg, store, iid = _closed_incident(tmp_path, "checkout \x00 down\x1b[31m")
    entry, new = Library.from_config(cfg).add(cfg, store, iid)
    assert new and entry.path.is_dir()
    lib = cfg.library_path
    assert _git(lib, "status", "--porcelain") == ""
    subject = _git(lib, "log", "-1", "--format=%s")
    assert iid in subject and "\x00" not in subject and "\x1b" not in subject
    store.close()


def test_a_failed_add_leaves_the_library_as_it_was_and_a_rerun_succeeds(tmp_path: Path) -> None:
    cfg, store, iid = _closed_incident(tmp_path, "checkout is down")
    library = Library.from_config(cfg)
    library.ensure_repo()
    lib = cfg.library_path
    _refuse_commits(lib, True)
    before = _snapshot(lib)
    with pytest.raises(LibraryError, match="git commit failed"):
        library.add(cfg, store, iid)
    assert _snapshot(lib) == before  # nothing staged, no stray entry, index.html as it was
    _refuse_commits(lib, False)
    entry, new = library.add(cfg, store, iid)
    assert new and (entry.path / "meta.json").exists()

    # An update that fails keeps the archived version (and any edits to it) in place.
    draft = cfg.incidents_dir / iid / "postmortem.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Summary\nsecond version")]), draft)
    _refuse_commits(lib, True)
    before = _snapshot(lib)
    with pytest.raises(LibraryError):
        library.add(cfg, store, iid)
    assert _snapshot(lib) == before
    _refuse_commits(lib, False)
    entry, new = library.add(cfg, store, iid)
    assert not new and "second version" in (entry.path / "postmortem.md").read_text()
    assert json.loads((entry.path / "meta.json").read_text())["id"] == iid
    store.close()
