"""A loopback HTTP server that speaks the Anthropic Messages API, scripted per test.

`POST /v1/messages` answers the next scripted item: a `Reply` (a whole message as JSON, or as a
server-sent-event stream when the request says `stream: true`), an `Error` (status, error type,
headers such as `retry-after`), `RawStream` (SSE text sent as is, e.g. broken tool-input JSON)
or `Hang` (answers only after a delay, for client timeouts). A callable item is called with the
request body and returns one of those, so a reply can depend on the tool results it was sent.

Every request is recorded (`requests`: parsed bodies, `raw`: the bytes exactly as received) so
tests can check what left the process.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


def text(t: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": t}


def tool_use(name: str, input: dict[str, Any] | None = None, id: str | None = None) -> dict[str, Any]:
    """A tool_use content block."""
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):04d}", "name": name, "input": input or {}}


@dataclass
class Reply:
    """One assistant message."""

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    output_tokens: int = 50


@dataclass
class Error:
    """An HTTP error answer in the API's error shape."""

    status: int
    type: str = "api_error"
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawStream:
    """SSE text sent verbatim with status 200."""

    body: str


@dataclass
class Hang:
    """Answer `then` only after `seconds` (or when the server stops)."""

    seconds: float
    then: Any = None


Item = Reply | Error | RawStream | Hang | Callable[[dict[str, Any]], Any]


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _message(reply: Reply, model: str, input_tokens: int, content: list[dict[str, Any]] | None,
             stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
    return {"id": f"msg_{next(_ids):06d}", "type": "message", "role": "assistant", "model": model,
            "content": reply.content if content is None else content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def stream_body(reply: Reply, model: str, input_tokens: int) -> str:
    """The SSE events a streaming request gets for `reply` (tool input as input_json_delta chunks)."""
    out = [_sse("message_start", {"type": "message_start",
                                  "message": _message(reply, model, input_tokens, [], None, 1)})]
    for i, block in enumerate(reply.content):
        if block["type"] == "text":
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "text", "text": ""}}))
            t = block["text"]
            for j in range(0, max(len(t), 1), 40):
                out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                        "delta": {"type": "text_delta", "text": t[j:j + 40]}}))
        else:
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            raw = json.dumps(block["input"])
            for j in range(0, len(raw), 17):
                out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": raw[j:j + 17]}}))
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(_sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                                      "usage": {"output_tokens": reply.output_tokens}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return "".join(out)


class MessagesServer:
    """Scripted Messages API on 127.0.0.1; use as a context manager."""

    def __init__(self, script: list[Item] | None = None) -> None:
        self.script: deque[Item] = deque(script or [])
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, *items: Item) -> None:
        """Append items to the script."""
        self.script.extend(items)

    def __enter__(self) -> MessagesServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any]) -> Any:
        if not self.script:
            return Error(500, "api_error", "the test script has no more replies")
        item = self.script.popleft()
        while callable(item) and not isinstance(item, (Reply, Error, RawStream, Hang)):
            item = item(body)
        return item

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", f"req_{next(_ids)}")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                server.raw.append(raw)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.split("?")[0] != "/v1/messages":
                    self._send(404, b'{"type":"error","error":{"type":"not_found_error","message":"no such path"}}',
                               "application/json")
                    return
                body = json.loads(raw or b"{}")
                server.requests.append(body)
                item = server._next(body)
                if isinstance(item, Hang):
                    server._stop.wait(item.seconds)
                    item = item.then or Error(500, "api_error", "hung")
                self._answer(item, body, len(raw))

            def _answer(self, item: Any, body: dict[str, Any], size: int) -> None:
                if isinstance(item, Error):
                    doc = {"type": "error", "error": {"type": item.type, "message": item.message}}
                    self._send(item.status, json.dumps(doc).encode(), "application/json", item.headers)
                elif isinstance(item, RawStream):
                    self._send(200, item.body.encode(), "text/event-stream")
                elif isinstance(item, Reply):
                    model, tokens = str(body.get("model", "")), max(1, size // 4)
                    if body.get("stream"):
                        self._send(200, stream_body(item, model, tokens).encode(), "text/event-stream")
                    else:
                        doc = _message(item, model, tokens, None, item.stop_reason, item.output_tokens)
                        self._send(200, json.dumps(doc).encode(), "application/json")
                else:
                    raise TypeError(f"not a script item: {item!r}")

        return Handler


def tool_results(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tool_result blocks of the last user message of a request, by tool_use id."""
    last = body["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    return {b["tool_use_id"]: b for b in content if b.get("type") == "tool_result"}


def result_text(block: dict[str, Any]) -> str:
    """The text of one tool_result block."""
    c = block.get("content", "")
    if isinstance(c, list):
        return "".join(x.get("text", "") for x in c)
    return str(c)
