"""A tiny loopback HTTP server for connector tests: a handler function answers each request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON, str -> text
    delay_s: float = 0.0


@dataclass
class LoopbackServer:
    """Serves `handler(Request) -> Reply` on 127.0.0.1; records every request in `requests`."""

    handler: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> LoopbackServer:
        outer = self

        class H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path,
                              {k: v[-1] for k, v in parse_qs(parts.query).items()},
                              {k.lower(): v for k, v in self.headers.items()})
                outer.requests.append(req)
                reply = outer.handler(req)
                if reply.delay_s:
                    threading.Event().wait(reply.delay_s)
                body = reply.body
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()
