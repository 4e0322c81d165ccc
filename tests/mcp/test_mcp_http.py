"""`incidentbook mcp --transport http`: bearer auth, size caps and redaction over streamable HTTP.

A real `incidentbook mcp` subprocess serves streamable HTTP on a loopback port; the official MCP
SDK's client talks to it (with and without the token), and plain HTTP requests check the 401s.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import requests

from tests.mcp.conftest import SECRETS, Workspace
from tests.support.promserver import free_port

TOKEN = "mcp-test-token-0123456789"
CAP = 1500


@pytest.fixture(scope="module")
def server(mcp_workspace: Workspace) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        mcp_workspace.command("--incident", mcp_workspace.incident, "--transport", "http", "--host", "127.0.0.1",
                              "--port", str(port), "--max-result-chars", str(CAP)),
        env=mcp_workspace.env(INCIDENTBOOK_MCP_TOKEN=TOKEN), cwd=str(mcp_workspace.home),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"incidentbook mcp exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("incidentbook mcp --transport http did not listen within 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _calls(url: str, token: str) -> dict[str, Any]:
    import httpx2
    import mcp_types as types
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    out: dict[str, Any] = {}
    async with http, Client(streamable_http_client(url, http_client=http),
                            client_info=types.Implementation(name="pytest-http", version="2.0")) as client:
        out["tools"] = [t.name for t in (await client.list_tools()).tools]
        for key, name, args in (
            ("big", "query_logs", {"logql": '{service=~".+"}', "limit": 5000}),
            ("planted", "query_logs", {"logql": '{service="catalog"} |~ "s3 upload|db connect|upstream 401|login failed"'}),
            ("write", "rollout_undo", {"name": "catalog"}),
        ):
            r = await client.call_tool(name, args)
            out[key] = (r.is_error, "".join(getattr(c, "text", "") for c in r.content))
    return out


def test_requests_without_the_token_are_refused(server: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        r = requests.post(server, json=body, headers={"Accept": "application/json, text/event-stream", **headers},
                          timeout=10)
        assert r.status_code == 401, headers
        assert "bearer token" in r.json()["error"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_sdk_client_with_the_token_gets_capped_redacted_results(server: str, mcp_workspace: Workspace) -> None:
    out = anyio.run(_calls, server, TOKEN)
    assert "query_logs" in out["tools"] and "rollout_undo" not in out["tools"]
    is_error, big = out["big"]
    assert not is_error and len(big) <= CAP + 200
    assert re.search(r"\[cut: \d+ more characters over the 1500-character limit; narrow the query\]", big)
    assert big.rstrip().endswith("</data>")
    is_error, planted = out["planted"]
    assert not is_error and "4 lines" in planted
    assert not [k for k, v in SECRETS.items() if v in planted]
    is_error, text = out["write"]
    assert is_error and "no tool named 'rollout_undo'" in text
    assert mcp_workspace.kube.writes == []

    from incidentbook.config import load_config
    from incidentbook.incidents import Store

    store = Store.from_config(load_config(path=mcp_workspace.config))
    try:
        calls = [e for e in store.timeline(mcp_workspace.incident) if e.kind == "mcp_call" and "http" in e.actor]
    finally:
        store.close()
    assert {e.actor for e in calls} == {"mcp:pytest-http 2.0"}
    big_call = next(e for e in calls if e.data["tool"] == "query_logs")
    assert big_call.data["truncated"] is True and big_call.data["chars"] <= CAP + 200


def test_http_on_a_public_address_needs_a_token(mcp_workspace: Workspace) -> None:
    env = mcp_workspace.env()
    env.pop("INCIDENTBOOK_MCP_TOKEN", None)
    r = subprocess.run(mcp_workspace.command("--transport", "http", "--host", "0.0.0.0", "--port", "1"),
                       env=env, cwd=str(mcp_workspace.home), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "INCIDENTBOOK_MCP_TOKEN" in r.stderr and "Traceback" not in r.stderr
