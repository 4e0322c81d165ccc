"""Scenario -> incident -> investigation -> close -> postmortem -> archive -> search, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from incidentbook.errors import BadInput, NotFound
from incidentbook.postmortems import Library, close_incident, investigation_state
from tests.postmortems.conftest import PLANTED

BIN = Path(sys.executable).parent / "incidentbook"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INCIDENTBOOK_HOME": str(home)}
    return subprocess.run([str(BIN), *args], cwd=home, env=env, capture_output=True, text=True, timeout=120)


def all_library_bytes(lib: Path) -> bytes:
    """Every file under the library plus every git object, decompressed."""
    blobs = [p.read_bytes() for p in lib.rglob("*") if p.is_file()]
    objects = subprocess.run(["git", "-C", str(lib), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True, check=True).stdout
    return b"\n".join(blobs) + objects


def test_close_postmortem_archive_search_history(workspace):
    cfg, store, iid = workspace
    home = cfg.home
    _, hyps = investigation_state(store.timeline(iid))
    assert hyps, "the runbook's investigation recorded hypotheses"
    top = hyps[0]

    # closing with an unknown hypothesis or an unknown incident is refused, nothing changes
    r = cli(home, "incidents", "close", iid, "--root-cause", "H99")
    assert r.returncode == 2 and "no such hypothesis" in r.stderr
    r = cli(home, "incidents", "close", "INC-20990101-0001")
    assert r.returncode == 2 and "no incident" in r.stderr
    assert store.get_incident(iid).status == "open"

    r = cli(home, "incidents", "close", iid, "--summary", "A rollout broke catalog; rolled back.",
            "--root-cause", top["id"].upper(), "--json")
    assert r.returncode == 0, r.stderr
    closed = json.loads(r.stdout)
    assert closed["status"] == "closed" and top["statement"] in closed["root_cause"]
    kinds = [e.kind for e in store.timeline(iid)]
    assert "hypothesis_confirmed" in kinds and "root_cause" in kinds
    r = cli(home, "incidents", "close", iid)
    assert r.returncode == 2 and "already closed" in r.stderr

    # draft: impact computed from the bundle, root cause is the confirmed hypothesis
    r = cli(home, "postmortem", iid, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["root_cause"]["id"] == top["id"]
    imp = doc["impact"]
    assert imp["duration_s"] > 0 and imp["requests"] > 0 and imp["failed_requests"] > 0
    assert 0 < imp["budget_burned"]
    nb = nbformat.read(doc["postmortem"], as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    for heading in ("## Summary", "## Impact", "## Timeline", "## Root cause", "## Action items",
                    "## Appendix: proposals not taken"):
        assert heading in text
    assert "A rollout broke catalog" in text and top["statement"] in text
    assert cli(home, "postmortem", iid).returncode == 2  # a draft exists: never clobbered silently

    # archive
    r = cli(home, "library", "add", iid, "--json")
    assert r.returncode == 0, r.stderr
    entry = Path(json.loads(r.stdout)["path"])
    for name in ("postmortem.ipynb", "incident.ipynb", "bundle/manifest.json", "bundle/metrics.parquet",
                 "meta.json", "postmortem.html", "redaction.json"):
        assert (entry / name).exists(), name
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["schema_version"] == 1 and meta["root_cause"]["kind"] == top["fault_kind"]
    html = (entry / "postmortem.html").read_text()
    assert "Plotly.newPlot" in html and "_static/plotly.min.js" in html
    assert (cfg.library_path / "index.html").read_text().count(iid) >= 1

    # search by service, by a log template, by root-cause kind, with filters
    lib = Library.from_config(cfg)

    def ids(query: str = "", **filters: str) -> list[str]:
        return [h["id"] for h in lib.search(query, **filters)]

    svc = meta["services"][0]
    r = cli(home, "library", "search", "--service", svc, "--json")
    assert r.returncode == 0 and [h["id"] for h in json.loads(r.stdout)["results"]] == [iid]
    assert ids(service="no-such-service") == []
    template_words = " ".join(w for w in meta["log_templates"][0].split() if w.isalpha())[:60]
    assert ids(template_words) == [iid]
    assert ids(top["fault_kind"]) == [iid]
    assert ids(top["fault_kind"], severity="no-such-severity") == []
    assert ids(since="2999-01-01") == []
    (cfg.library_path / ".search.sqlite").unlink()  # the index is a cache: rebuilt from the files
    assert ids(top["fault_kind"]) == [iid]
    similar = Library.from_config(cfg).similar_incidents([svc], [meta["alertnames"][0]], meta["log_templates"][:1])
    assert similar and similar[0]["id"] == iid

    # archiving twice without a change is refused; an edit makes a second version
    r = cli(home, "library", "add", iid)
    assert r.returncode == 2 and "nothing changed" in r.stderr
    draft = Path(doc["postmortem"])
    nb = nbformat.read(draft, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Follow-up\n\nCanary analysis now gates catalog rollouts."))
    nbformat.write(nb, draft)
    assert cli(home, "postmortem", iid, "--archive").returncode == 2  # the draft exists; use library add
    assert cli(home, "library", "add", iid).returncode == 0
    r = cli(home, "library", "history", iid, "--json")
    versions = json.loads(r.stdout)["versions"]
    assert len(versions) == 2 and versions[0]["message"].startswith("Update")
    diff = subprocess.run(["git", "-C", str(cfg.library_path), "diff", versions[1]["commit"], versions[0]["commit"],
                           "--", str(entry / "postmortem.md")], capture_output=True, text=True).stdout
    assert "+Canary analysis now gates catalog rollouts." in diff  # readable diffs
    r = cli(home, "library", "show", iid)
    assert r.returncode == 0 and top["fault_kind"] in r.stdout

    # nothing planted reaches the library, git objects included
    everything = all_library_bytes(cfg.library_path)
    for value in PLANTED.values():
        assert value.encode() not in everything, value
    assert b"ops@shop.example" not in everything

    # a corrupt draft is reported with its path, not a traceback
    draft.write_text("{not json")
    r = cli(home, "library", "add", iid)
    assert r.returncode == 2 and "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_library_that_is_not_a_git_repository(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "notes.txt").write_text("hand-made")
    with pytest.raises(BadInput, match="not a git repository"):
        Library(lib).ensure_repo()
    with pytest.raises(NotFound):
        Library(tmp_path / "missing").history("INC-20260101-0001")
    empty = Library(tmp_path / "fresh")
    empty.ensure_repo()  # an empty or new directory becomes a repository
    assert empty.is_repo() and (empty.path / ".gitignore").exists()


def test_close_refuses_a_refuted_hypothesis(workspace):
    from incidentbook.postmortems.draft import resolve_root_cause

    class Ev:
        def __init__(self, kind, data):
            self.kind, self.data = kind, data

    events = [Ev("investigation", {"hypotheses": [{"id": "h1", "statement": "x"}, {"id": "h2", "statement": "y"}]}),
              Ev("hypothesis_refuted", {"hypothesis": "h2", "note": "flat after rollback"})]
    assert resolve_root_cause(events, "H1")["statement"] == "x"
    with pytest.raises(BadInput, match="refuted"):
        resolve_root_cause(events, "h2")
    with pytest.raises(BadInput, match="no investigation"):
        resolve_root_cause([], "H1")
    _ = close_incident  # the store path is covered end to end above


def test_close_magic_in_a_real_shell(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.ingest import ingest_alertmanager
    from incidentbook.workspace import init_workspace
    from tests.test_cli import payload

    init_workspace(tmp_path)
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path=tmp_path / "incidentbook.toml")
    iid = ingest_alertmanager(cfg, json.dumps(payload()).encode(), run=False)[0].id
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "incidentbook")
        shell.run_line_magic("incident", f"use {iid}")
        shell.run_line_magic("close", '--summary "bad config rolled back" --root-cause "timeout set to 250ms"')
        with Store.from_config(cfg) as store:
            inc = store.get_incident(iid)
        assert inc.status == "closed" and inc.summary == "bad config rolled back"
        assert inc.root_cause == "timeout set to 250ms"
    finally:
        shell.run_line_magic("unload_ext", "incidentbook")
        InteractiveShell.clear_instance()
