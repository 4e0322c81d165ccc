"""Hostile MCP tool calls: odd Unicode, NUL, huge and nested values, code injection, forged names.

In-process over `McpTools` (the layer both transports call) on the planted bad-deploy bundle of
the Claude investigator's tests; the transports themselves are tested in tests/mcp/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from incidentbook.config import Config
from incidentbook.mcp.tools import McpTools, _client_name, context_for
from tests.agent.test_claude import SECRETS, planted_bundle  # noqa: F401 - the session fixture


@pytest.fixture
def tools(planted_bundle: Path, tmp_path: Path) -> McpTools:  # noqa: F811
    cfg = Config(home=tmp_path)
    return McpTools(cfg, context_for(cfg, bundle=planted_bundle), result_tokens=800, max_result_chars=4000)


def _nested(depth: int) -> object:
    v: object = "x"
    for _ in range(depth):
        v = [v]
    return v


@pytest.mark.parametrize("name, args", [
    ("query_logs", {"logql": '{service="auth"} |= "\x00"'}),
    ("query_logs", {"logql": '{service="auth"} |= "\ud800\udfff\u202e"'}),
    ("query_logs", {"logql": "x" * 1_000_000}),
    ("query_metrics", {"promql": _nested(500)}),
    ("query_metrics", {"promql": "up", "start": "yesterday-ish"}),
    ("query_metrics", {"promql": "up", "unexpected": "field"}),
    ("kubernetes_events", ["not", "an", "object"]),
    ("hypotheses", {"extra": 1}),
    ("propose_action", {"verb": "scale", "target": "catalog'); __import__('os').system('id') #", "replicas": 1,
                        "rationale": "x", "hypothesis_id": "H1"}),
    ("propose_action", {"verb": "delete", "target": "catalog", "rationale": "x", "hypothesis_id": "H1"}),
    ("record_hypothesis", {"statement": "x", "service": "auth", "fault_kind": "bad_deploy", "confidence": 0.5,
                           "evidence_for": [{"summary": "y"}]}),
    ("exec_python", {"code": "import os"}),
])
def test_hostile_calls_are_one_line_errors_or_plain_data(tools: McpTools, name: str, args: object) -> None:
    res = tools.call(name, args, client="fuzz")
    assert isinstance(res.text, str) and len(res.text) <= 4000 + 200
    if res.is_error:
        assert "Traceback" not in res.text and res.text.count("\n") <= 1, res.text
    else:
        assert res.text.startswith("<data ") and res.text.count("</data>") == 1


def test_without_an_incident_nothing_is_recorded(tools: McpTools) -> None:
    for name in ("record_hypothesis", "propose_cell", "propose_action"):
        res = tools.call(name, {}, client="x")
        assert res.is_error and "--incident" in res.text


def test_pseudonyms_in_queries_match_and_secrets_never_come_back(tools: McpTools) -> None:
    first = tools.call("query_logs", {"logql": '{service="auth"} |= "login failed"'}).text
    pseudo = re.search(r"\[EMAIL-\d+\]", first).group(0)
    again = tools.call("query_logs", {"logql": f'{{service="auth"}} |= "{pseudo}"'}).text
    assert "1 lines" in again and pseudo in again
    texts = [first, again, tools.call("recent_changes", {"lookback_minutes": 600}).text,
             tools.call("kubernetes_events", {}).text]
    assert not [k for k, v in SECRETS.items() for t in texts if v in t]


@pytest.mark.parametrize("raw, expect", [
    ("claude-code 1.2", "claude-code 1.2"), ("evil\nmcp:admin\x00", "evilmcp:admin"), ("", "unknown"),
    ("x" * 500, "x" * 80), ("\u202eadmin", "admin"),
])
def test_client_names_cannot_forge_timeline_lines(raw: str, expect: str) -> None:
    assert _client_name(raw) == expect
