"""`%investigate` with the Claude investigator in a real IPython shell: the board fills as it streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tests.agent.messages_server import MessagesServer, Reply, text, tool_use
from tests.kernel_ext.incident_fixture import WINDOW, make_bundle, open_incident


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, MessagesServer]]:
    with MessagesServer() as server:
        home = tmp_path / "home"
        home.mkdir()
        (home / "incidentbook.toml").write_text(
            f'[agent]\ninvestigator = "claude"\napi_key_env = "TEST_ANTHROPIC_KEY"\nbase_url = "{server.url}"\n')
        for k, v in {"INCIDENTBOOK_HOME": str(home), "TEST_ANTHROPIC_KEY": "sk-ant-test", "USER": "alice"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("INCIDENTBOOK_HEADLESS", raising=False)
        monkeypatch.chdir(home)
        iid = open_incident(home)
        bundle = make_bundle(tmp_path / "bundle")
        sh = InteractiveShell.instance()
        sh.reset(new_session=False)
        sh.run_line_magic("load_ext", "incidentbook")
        sh.push({"incident_id": iid, "bundle": str(bundle), "window_start": WINDOW[0], "window_end": WINDOW[1],
                 "service": "checkout", "labels": {"service": "checkout", "namespace": "shop"}})
        try:
            yield sh, server
        finally:
            sh.run_line_magic("unload_ext", "incidentbook")
            sh.rl_next_input = None
            sh.reset(new_session=False)


def test_investigate_streams_claude_hypotheses_to_the_board(shell: tuple[Any, MessagesServer]) -> None:
    sh, server = shell
    server.add(
        Reply([tool_use("query_metrics", {"promql": 'sum(rate(http_requests_total{service="checkout"}[5m]))'},
                        id="m1")], "tool_use"),
        Reply([tool_use("record_hypothesis", {
            "statement": "checkout is failing on its own", "service": "checkout", "fault_kind": "unknown",
            "confidence": 0.6, "evidence_for": [{"summary": "request rate seen", "tool_use_id": "m1"}]}, id="h1"),
            tool_use("propose_cell", {"title": "checkout by code", "hypothesis_id": "C1", "rationale": "error mix",
                                      "code": '%promql sum by (code) (rate(http_requests_total{service="checkout"}[5m]))',
                                      "cites": ["m1"]}, id="p1")], "tool_use"),
        Reply([text("checkout itself.")]))
    with capture_output() as cap:
        assert sh.run_cell('%investigate "why is checkout failing?"').success
    html = [o.data.get("text/html", "") for o in cap.outputs]
    live = [h for h in html if "investigating…" in h]
    assert len(live) >= 2 and any("C1" in h and "checkout is failing on its own" in h for h in live)

    from incidentbook.kernel_ext import get_session

    inv = [e for e in get_session().store.timeline(get_session().require()) if e.kind == "investigation"][-1].data
    assert inv["investigator"] == "claude" and inv["hypotheses"][0]["id"] == "C1"
    assert inv["usage"]["requests"] == 3
    assert sh.rl_next_input and "%promql" in sh.rl_next_input  # proposals still become the next cell
