"""A loopback server speaking the slice of the Confluence REST API (v1) that incidentbook uses.

No Confluence can be installed here, so the real `atlassian-python-api` client talks to this over
HTTP, with the documented endpoints and shapes:

- `GET /rest/api/content?spaceKey=&title=` (find a page by title), `POST /rest/api/content`
  (create; 400 when the title is taken in the space), `GET /rest/api/content/{id}?expand=version,…`,
  `PUT /rest/api/content/{id}` (update; 409 unless `version.number` is the current one + 1);
- `GET|POST /rest/api/content/{id}/child/attachment` (multipart upload with `X-Atlassian-Token:
  no-check`), `GET|POST /rest/api/content/{id}/label`;
- `GET /rest/api/search?cql=` and `GET /rest/api/content/search?cql=` (CQL: `space = "X"`,
  `type = page`, `text ~ "word"` terms joined by `and` or by `or`).

Authentication is HTTP basic (`user`, `token`) or a bearer personal access token; anything else
is 401. `fail_next(status, retry_after=…)` answers the next request with an error (429 with
`Retry-After`, 503, 500…). `edit_by_person(id)` is someone editing the page in the browser (its
version goes up). `requests` records every call (method, path, query).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_CONTENT = re.compile(r"^/rest/api/content/(\d+)$")
_CHILD_ATT = re.compile(r"^/rest/api/content/(\d+)/child/attachment$")
_LABEL = re.compile(r"^/rest/api/content/(\d+)/label$")
_CQL_SPACE = re.compile(r'space\s*=\s*"((?:[^"\\]|\\.)*)"')
_CQL_TEXT = re.compile(r'text\s*~\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class ConfluenceServer:
    """Pages, attachments and labels in memory; start with `with ConfluenceServer() as c:`."""

    user: str = "oncall@example.com"
    token: str = "loopback-token"
    bearer: bool = False
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    url: str = ""
    _next: int = 1000

    # -- test controls -------------------------------------------------------------------------
    def fail_next(self, status: int, retry_after: str | None = None, method: str = "") -> None:
        """Answer the next request (the next `method` one, when given) with `status` (and Retry-After)."""
        self.failures.append((status, {"Retry-After": retry_after} if retry_after is not None else {}, method))

    def add_page(self, space: str, title: str, body: str, labels: list[str] | None = None) -> str:
        """A page someone wrote in Confluence (not published by incidentbook)."""
        return self._create({"space": {"key": space}, "title": title, "type": "page",
                             "body": {"storage": {"value": body, "representation": "storage"}}}, labels)[1]["id"]

    def edit_by_person(self, page_id: str, text: str = "<p>edited in the browser</p>") -> None:
        """Someone edits the page in Confluence: its body changes and its version goes up."""
        page = self.pages[page_id]
        page["body"] += text
        page["version"] += 1

    def writes(self) -> list[tuple[str, str]]:
        """Every request that changed something (POST/PUT/DELETE)."""
        return [(m, p) for m, p, _ in self.requests if m in ("POST", "PUT", "DELETE")]

    # -- the API -------------------------------------------------------------------------------
    def _authorised(self, header: str) -> bool:
        if self.bearer:
            return header == f"Bearer {self.token}"
        if not header.startswith("Basic "):
            return False
        try:
            user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.user and token == self.token

    def _view(self, page: dict[str, Any], expand: str = "") -> dict[str, Any]:
        out = {"id": page["id"], "type": "page", "status": "current", "title": page["title"],
               "space": {"key": page["space"]}, "version": {"number": page["version"]},
               "ancestors": page["ancestors"],
               "_links": {"webui": f"/spaces/{page['space']}/pages/{page['id']}", "base": self.url}}
        if "body.storage" in expand:
            out["body"] = {"storage": {"value": page["body"], "representation": "storage"}}
        return out

    def _create(self, body: dict[str, Any], labels: list[str] | None = None) -> tuple[int, Any]:
        space = (body.get("space") or {}).get("key", "")
        title = str(body.get("title", ""))
        if not space or not title:
            return 400, {"statusCode": 400, "message": "space and title are required"}
        if any(p["space"] == space and p["title"] == title for p in self.pages.values()):
            return 400, {"statusCode": 400, "message": f"A page with this title already exists: {title}"}
        self._next += 1
        pid = str(self._next)
        self.pages[pid] = {"id": pid, "space": space, "title": title, "version": 1,
                           "body": ((body.get("body") or {}).get("storage") or {}).get("value", ""),
                           "ancestors": body.get("ancestors") or [], "labels": list(labels or []),
                           "attachments": []}
        return 200, self._view(self.pages[pid])

    def _cql(self, cql: str, limit: int) -> dict[str, Any]:
        space = _CQL_SPACE.search(cql)
        words = [w.replace('\\"', '"').replace("\\\\", "\\").lower() for w in _CQL_TEXT.findall(cql)]
        results = []
        for page in self.pages.values():
            if space and page["space"] != space.group(1):
                continue
            text = (page["title"] + " " + re.sub(r"<[^>]+>", " ", page["body"])).lower()
            joined_by_or = " or text ~ " in cql
            if words and not (any if joined_by_or else all)(w in text for w in words):
                continue
            results.append({"content": self._view(page), "title": page["title"],
                            "excerpt": re.sub(r"<[^>]+>", " ", page["body"])[:200],
                            "url": f"/spaces/{page['space']}/pages/{page['id']}", "entityType": "content",
                            "lastModified": "2026-11-30T10:00:00.000Z"})
        return {"results": results[:limit], "start": 0, "limit": limit, "size": len(results[:limit]),
                "totalSize": len(results), "cqlQuery": cql}

    def _handle(self, method: str, path: str, q: dict[str, str], body: Any, raw: bytes,
                ctype: str) -> tuple[int, Any]:
        if path in ("/rest/api/search", "/rest/api/content/search") and method == "GET":
            if "cql" not in q:
                return 400, {"statusCode": 400, "message": "cql is required"}
            return 200, self._cql(q["cql"], int(q.get("limit", 25)))
        if path.rstrip("/") == "/rest/api/content":
            if method == "POST":
                return self._create(body or {})
            found = [self._view(p, q.get("expand", "")) for p in self.pages.values()
                     if p["space"] == q.get("spaceKey", p["space"]) and p["title"] == q.get("title", p["title"])]
            return 200, {"results": found, "size": len(found), "start": 0, "limit": 25}
        m = _CONTENT.match(path)
        if m:
            page = self.pages.get(m.group(1))
            if page is None:
                return 404, {"statusCode": 404, "message": f"No content found with id: {m.group(1)}"}
            if method == "GET":
                return 200, self._view(page, q.get("expand", ""))
            if method == "PUT":
                wanted = int(((body or {}).get("version") or {}).get("number", 0))
                if wanted != page["version"] + 1:
                    return 409, {"statusCode": 409, "message": f"Version must be incremented on update. "
                                                               f"Current version is: {page['version']}"}
                page["version"] = wanted
                page["title"] = body.get("title", page["title"])
                page["body"] = ((body.get("body") or {}).get("storage") or {}).get("value", page["body"])
                return 200, self._view(page)
        m = _CHILD_ATT.match(path)
        if m:
            page = self.pages.get(m.group(1))
            if page is None:
                return 404, {"statusCode": 404, "message": "No content found"}
            if method == "GET":
                items = [a for a in page["attachments"] if a["title"] == q.get("filename", a["title"])]
                return 200, {"results": items, "size": len(items)}
            if method == "POST":
                names = re.findall(rb'filename="([^"]*)"', raw)
                if not ctype.startswith("multipart/form-data") or not names:
                    return 400, {"statusCode": 400, "message": "a multipart file upload is required"}
                name = names[0].decode("utf-8", "replace")
                if any(a["title"] == name for a in page["attachments"]):
                    return 400, {"statusCode": 400, "message": f"Cannot add a new attachment with same file name: {name}"}
                self._next += 1
                att = {"id": f"att{self._next}", "type": "attachment", "title": name, "size": len(raw),
                       "png": b"\x89PNG" in raw}
                page["attachments"].append(att)
                return 200, {"results": [att], "size": 1}
        m = _LABEL.match(path)
        if m:
            page = self.pages.get(m.group(1))
            if page is None:
                return 404, {"statusCode": 404, "message": "No content found"}
            if method == "POST":
                for item in body if isinstance(body, list) else [body]:
                    name = str((item or {}).get("name", ""))
                    if not name or " " in name:
                        return 400, {"statusCode": 400, "message": f"invalid label {name!r}"}
                    if name not in page["labels"]:
                        page["labels"].append(name)
            return 200, {"results": [{"prefix": "global", "name": n} for n in page["labels"]],
                         "size": len(page["labels"])}
        return 404, {"statusCode": 404, "message": f"no route {method} {path}"}

    def __enter__(self) -> ConfluenceServer:
        api = self

        class H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                ctype = self.headers.get("Content-Type", "")
                api.requests.append((self.command, parts.path, q))
                extra: dict[str, str] = {}
                if not api._authorised(self.headers.get("Authorization", "")):
                    status, reply = 401, {"statusCode": 401, "message": "Basic authentication required"}
                elif api.failures and api.failures[0][2] in ("", self.command):
                    status, extra, _ = api.failures.pop(0)
                    reply = {"statusCode": status, "message": {409: "Version conflict: the page was changed",
                                                               429: "Rate limit exceeded"}.get(status, "failure")}
                else:
                    try:
                        body = json.loads(raw) if raw and ctype.startswith("application/json") else None
                    except ValueError:
                        body = None
                    status, reply = api._handle(self.command, parts.path, q, body, raw, ctype)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
