"""`incidentbook mcp`: the tools of `incidentbook.mcp.tools` over MCP (stdio or streamable HTTP).

Built on the official `mcp` SDK's low-level `Server`, so the tool list and input schemas are the
very pydantic models the Claude investigator's tools validate with. The MCP client's name (the
`clientInfo` of its initialize request, or of each request on newer protocol versions) is
recorded with every call on the incident's timeline.

HTTP needs a bearer token (from the variable `[mcp] token_env` names) on any host; without one
the server starts only on a loopback address, and says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from incidentbook.errors import BadInput, NotConfigured
from incidentbook.mcp.tools import SERVER_INSTRUCTIONS, McpTools, tool_definitions

READ_ONLY = frozenset({"query_metrics", "query_logs", "kubernetes_events", "kubernetes_pods", "recent_changes",
                       "planned_events",
                       "search_postmortems", "read_runbook", "list_runbooks", "signals_coverage", "hypotheses"})


def _import_mcp() -> Any:
    try:
        import mcp_types
        from mcp.server import Server
    except ImportError:
        raise NotConfigured("the MCP server needs the mcp SDK: pip install incidentbook[mcp]") from None
    return Server, mcp_types


def client_name(ctx: Any) -> str:
    """The calling client's `clientInfo.name` (and version), or 'unknown'."""
    info = None
    params = getattr(getattr(ctx, "session", None), "client_params", None)
    if params is not None:
        info = getattr(params, "client_info", None)
    if info is None:
        meta = getattr(ctx, "meta", None)
        raw = None
        if meta is not None:
            extra = getattr(meta, "model_extra", None) or {}
            raw = extra.get("io.modelcontextprotocol/clientInfo") if isinstance(extra, dict) else None
            if raw is None and isinstance(meta, dict):
                raw = meta.get("io.modelcontextprotocol/clientInfo")
        if isinstance(raw, dict):
            return f"{raw.get('name', 'unknown')} {raw.get('version', '')}".strip()
        return "unknown"
    return f"{getattr(info, 'name', 'unknown')} {getattr(info, 'version', '') or ''}".strip()


def build_server(tools: McpTools) -> Any:
    """The MCP `Server` answering tools/list and tools/call from `tools`."""
    Server, types = _import_mcp()
    from incidentbook import __version__

    defs = tool_definitions()
    listed = [types.Tool(name=d["name"], description=d["description"], input_schema=d["input_schema"],
                         annotations=types.ToolAnnotations(read_only_hint=d["name"] in READ_ONLY,
                                                           destructive_hint=False, open_world_hint=False))
              for d in defs]

    async def on_list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=listed)

    async def on_call_tool(ctx: Any, params: Any) -> Any:
        import anyio

        who = client_name(ctx)
        # The tools are synchronous (pandas, SQLAlchemy): run them off the event loop.
        res = await anyio.to_thread.run_sync(tools.call, params.name, params.arguments or {}, who)
        return types.CallToolResult(content=[types.TextContent(type="text", text=res.text)], is_error=res.is_error)

    return Server("incidentbook", version=__version__, instructions=SERVER_INSTRUCTIONS,
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(tools: McpTools) -> None:
    """Serve one client over stdin/stdout until it disconnects."""
    from mcp.server.stdio import stdio_server

    server = build_server(tools)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: Callable[..., Awaitable[None]], token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            got = headers.get(b"authorization", b"")
            ok = got[:7].lower() == b"bearer " and hmac.compare_digest(got[7:].strip(), self.token)
            if not ok:
                body = b'{"error": "missing or wrong bearer token; send Authorization: Bearer <token>"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="incidentbook-mcp"'),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(tools: McpTools, host: str, token: str | None) -> Any:
    """The streamable-HTTP ASGI app at `/mcp`, behind bearer auth when `token` is given."""
    server = build_server(tools)
    app = server.streamable_http_app(host=host)
    return BearerAuth(app, token) if token else app


def http_token(cfg: Any, host: str) -> str | None:
    """The bearer token HTTP clients must send; BadInput on a non-loopback host without one."""
    name = cfg.mcp.token_env
    token = os.environ.get(name, "") if name else ""
    if token:
        return token
    if not is_loopback(host):
        raise BadInput(f"refusing to serve MCP over HTTP on {host} without a token: export {name or 'a token variable'} "
                       "(named by [mcp] token_env), or use --host 127.0.0.1")
    print(f"incidentbook mcp: no token in ${name}; serving without auth on loopback {host} only", file=sys.stderr)
    return None


def serve_http(tools: McpTools, host: str, port: int, token: str | None) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until interrupted (see `http_token`)."""
    import uvicorn

    app = http_app(tools, host, token)
    print(f"incidentbook mcp: streamable HTTP at http://{host}:{port}/mcp"
          + (" (bearer token required)" if token else ""), file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
