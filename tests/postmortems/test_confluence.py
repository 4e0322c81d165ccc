"""`incidentbook postmortem publish ID --to confluence` and Confluence as history at hypothesis time.

Confluence cannot be installed here: the real `atlassian-python-api` client talks to
`tests.support.confluence.ConfluenceServer`, a loopback server speaking the documented REST API
(content create/get/update with versions, child attachments, labels, CQL search), including 401,
409 and 429 with Retry-After. The impact chart is drawn with kaleido, which starts the system
Chromium, hence the `slow` marker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from incidentbook.cli import main
from tests.support.confluence import ConfluenceServer

pytestmark = pytest.mark.slow

PASSWORD = "Tr0ub4dor-conf-planted"
EMAIL = "jane.doe@shop-payments.example"
SUMMARY = f"Checkout <failed> & recovered ]]> \x00 after rollback; db password={PASSWORD}, ask {EMAIL}"


@dataclass
class Published:
    cfg_path: Path
    incident: str
    server: ConfluenceServer
    monkeypatch: Any

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.cfg_path), "postmortem", "publish", self.incident, "--to", "confluence",
                     *args])

    def meta(self) -> dict[str, Any]:
        from incidentbook.config import load_config
        from incidentbook.postmortems import Library

        return Library.from_config(load_config(path=self.cfg_path)).get(self.incident).meta


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A closed bad-deploy incident archived in the library (runbook not run: no kernel needed)."""
    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.ingest import ingest_alertmanager
    from incidentbook.postmortems import Library, close_incident
    from incidentbook.scenarios import generate
    from incidentbook.workspace import init_workspace

    home = tmp_path_factory.mktemp("confluence-home")
    init_workspace(home)
    g = generate("bad-deploy", home / "scenario", seed=3, duration="1h")
    cfg = load_config(path=home / "incidentbook.toml")
    firing = [p for p in g.payloads if json.loads(p.read_text())["status"] == "firing"]
    iid = ingest_alertmanager(cfg, firing[0].read_bytes(), bundle=Path(g.bundle_dir), run=False)[0].id
    store = Store.from_config(cfg)
    close_incident(store, iid, "alice", summary=SUMMARY, root_cause="catalog v3.28 rollout broke /v1/products")
    Library.from_config(cfg).add(cfg, store, iid)
    store.close()
    return home, iid


@pytest.fixture
def published(entry: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> Iterator[Published]:
    """A fresh Confluence for each test, configured in a copy of the workspace config."""
    home, iid = entry
    with ConfluenceServer() as server:
        cfg_path = home / "incidentbook.toml"
        base = cfg_path.read_text().split("\n[confluence]")[0]
        cfg_path.write_text(base + f'\n[confluence]\nurl = "{server.url}"\nspace = "OPS"\n'
                            'user_env = "TEST_CONF_USER"\ntoken_env = "TEST_CONF_TOKEN"\nmax_retry_wait_s = 5\n')
        monkeypatch.setenv("TEST_CONF_USER", server.user)
        monkeypatch.setenv("TEST_CONF_TOKEN", server.token)
        monkeypatch.setenv("INCIDENTBOOK_HOME", str(home))
        p = Published(cfg_path, iid, server, monkeypatch)
        meta = p.meta()
        if meta.pop("confluence", None):  # each test starts unpublished
            from incidentbook.config import load_config
            from incidentbook.postmortems import Library

            Library.from_config(load_config(path=cfg_path)).get(iid).path.joinpath("meta.json").write_text(
                json.dumps(meta, indent=2, sort_keys=True) + "\n")
        yield p


def test_publish_creates_a_labelled_page_with_the_postmortem(published: Published, capsys: Any) -> None:
    assert published.cli("--json") == 0
    doc = json.loads(capsys.readouterr().out)
    page = published.server.pages[doc["page_id"]]
    assert doc["created"] is True and doc["version"] == 1 and page["version"] == 1 and page["space"] == "OPS"
    assert page["title"] == doc["title"] and page["title"].startswith(f"{published.incident}: ")
    body = page["body"]
    for heading in ("Summary", "Impact", "Timeline", "Root cause", "Action items"):
        assert f"<h2>{heading}</h2>" in body, heading
    assert "<table>" in body and "<th>Time (UTC)</th>" in body  # the timeline as a table
    assert "<ac:task-list>" in body and "<ac:task-status>incomplete</ac:task-status>" in body
    assert "catalog v3.28 rollout broke /v1/products" in body
    assert f"incidentbook library show {published.incident}" in body  # the link back
    assert {"postmortem", "catalog", "severity-critical"} <= set(page["labels"])
    assert [a["title"] for a in page["attachments"]] == doc["attachments"] and page["attachments"][0]["png"]
    assert f'ri:filename="{doc["attachments"][0]}"' in body
    assert published.meta()["confluence"]["page_id"] == doc["page_id"]


def test_the_page_is_redacted_and_escaped(published: Published) -> None:
    assert published.cli() == 0
    body = next(iter(published.server.pages.values()))["body"]
    assert PASSWORD not in body and EMAIL not in body and "[PASSWORD-" in body
    assert "Checkout &lt;failed&gt; &amp; recovered ]]&gt;" in body and "\x00" not in body
    from incidentbook.postmortems.storage import well_formed

    assert well_formed(body)


def test_publishing_again_updates_the_same_page(published: Published, capsys: Any) -> None:
    assert published.cli() == 0
    assert published.cli("--json") == 0
    doc = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert len(published.server.pages) == 1 and doc["created"] is False and doc["version"] == 2
    assert published.meta()["confluence"]["version"] == 2
    posts = [p for m, p in published.server.writes() if m == "POST" and "attachment" in p]
    assert len(posts) == 1  # the unchanged chart is not uploaded twice

    from incidentbook.config import load_config
    from incidentbook.postmortems import Library

    history = Library.from_config(load_config(path=published.cfg_path)).history(published.incident)
    assert history[0].message.startswith(f"Publish {published.incident} to Confluence (page {doc['page_id']}, version 2")


def test_an_edit_made_in_confluence_is_not_overwritten_without_force(published: Published, capsys: Any) -> None:
    assert published.cli() == 0
    pid = published.meta()["confluence"]["page_id"]
    published.server.edit_by_person(pid, "<p>added by Bob in the browser</p>")
    capsys.readouterr()
    assert published.cli() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "edited there since the last publish" in err and "--force" in err
    assert "added by Bob" in published.server.pages[pid]["body"] and published.server.pages[pid]["version"] == 2
    assert published.cli("--force") == 0
    assert "added by Bob" not in published.server.pages[pid]["body"] and published.server.pages[pid]["version"] == 3
    assert published.meta()["confluence"]["version"] == 3


def test_a_version_conflict_while_updating_is_reported_and_not_recorded(published: Published, capsys: Any) -> None:
    assert published.cli() == 0
    published.server.fail_next(409, method="PUT")
    capsys.readouterr()
    assert published.cli() == 1
    err = capsys.readouterr().err
    assert "version conflict (409)" in err and "Traceback" not in err
    assert published.meta()["confluence"]["version"] == 1


def test_wrong_credentials_are_one_line_without_the_token(published: Published, capsys: Any) -> None:
    published.monkeypatch.setenv("TEST_CONF_TOKEN", "not-the-token-123")
    assert published.cli() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rejected the credentials (401)" in err and "not-the-token-123" not in err
    published.monkeypatch.delenv("TEST_CONF_TOKEN")
    assert published.cli() == 2
    assert "TEST_CONF_TOKEN" in capsys.readouterr().err
    assert published.server.pages == {}


def test_rate_limiting_waits_as_retry_after_says(published: Published) -> None:
    published.server.fail_next(429, retry_after="1", method="POST")
    t0 = time.monotonic()
    assert published.cli() == 0
    assert time.monotonic() - t0 >= 1.0
    creates = [p for m, p in published.server.writes() if m == "POST" and p.rstrip("/") == "/rest/api/content"]
    assert len(creates) == 2 and len(published.server.pages) == 1  # the refused one, then the retry


# ---- history at hypothesis time ------------------------------------------------------------

def _history(published: Published) -> Any:
    from incidentbook.config import load_config
    from incidentbook.postmortems.history import history_for

    return history_for(load_config(path=published.cfg_path))


def test_the_board_cites_a_postmortem_that_lives_only_in_confluence(published: Published) -> None:
    pid = published.server.add_page("OPS", "2024-03 catalog outage", "<p>a bad_deploy of catalog: TypeError on "
                                    "/v1/products after the rollout</p>")
    published.server.add_page("OTHER", "catalog in another space", "<p>catalog bad_deploy</p>")
    from incidentbook.agent.rules import RulesInvestigator
    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.mcp.tools import context_for

    cfg = load_config(path=published.cfg_path)
    store = Store.from_config(cfg)
    try:
        ctx = context_for(cfg, store, published.incident)
    finally:
        store.close()
    inv = RulesInvestigator().investigate(ctx)
    cited = [s for h in inv.hypotheses for s in h.similar_incidents if s.get("source") == "confluence"]
    assert cited and cited[0]["id"] == f"confluence:{pid}" and cited[0]["link"].endswith(f"/pages/{pid}")
    assert not [s for s in cited if s["title"] == "catalog in another space"]
    cql = [q["cql"] for m, p, q in published.server.requests if p == "/rest/api/search"]
    assert cql and all(c.startswith('space = "OPS" and type = page and (text ~ ') for c in cql)


def test_confluence_down_is_a_note_not_a_failure(published: Published) -> None:
    published.server.add_page("OPS", "2024-03 catalog outage", "<p>catalog bad_deploy</p>")
    published.monkeypatch.setenv("TEST_CONF_TOKEN", "wrong")
    history = _history(published)
    hits = history.search("catalog bad_deploy")
    assert all(h.get("source") == "library" for h in hits)  # the library still answers
    assert history.unavailable == [f"history source unavailable: Confluence space OPS (Confluence at "
                                   f"{published.server.url} rejected the credentials (401); check the user and "
                                   "token variables of [confluence])"]
    from incidentbook.agent.prompt import make_redactor
    from incidentbook.agent.tools import ToolBox
    from incidentbook.mcp.tools import context_for

    ctx = context_for(_cfg(published))
    ctx.history = history
    out = ToolBox(ctx, make_redactor(), 2000).run("t1", "search_postmortems", {"query": "catalog"})
    assert not out.is_error and "history source unavailable: Confluence space OPS" in out.text


def _cfg(published: Published) -> Any:
    from incidentbook.config import load_config

    return load_config(path=published.cfg_path)


def test_data_center_personal_access_token(published: Published) -> None:
    published.server.bearer = True
    assert published.cli() == 1  # basic auth is refused by a bearer-only server
    text = published.cfg_path.read_text().replace('token_env = "TEST_CONF_TOKEN"',
                                                  'token_env = "TEST_CONF_TOKEN"\nauth = "bearer"')
    published.cfg_path.write_text(text)
    assert published.cli() == 0 and len(published.server.pages) == 1


def test_similar_incidents_adds_pages_from_confluence(published: Published) -> None:
    pid = published.server.add_page("OPS", "2023 search outage", "<p>HighErrorRate on search after a deploy</p>")
    from incidentbook.postmortems import similar_incidents

    found = similar_incidents(["search"], ["HighErrorRate"], cfg=_cfg(published))
    assert [f["id"] for f in found if f.get("source") == "confluence"] == [f"confluence:{pid}"]
