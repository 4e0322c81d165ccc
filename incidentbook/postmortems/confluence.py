"""Publish a library postmortem to Confluence: `incidentbook postmortem publish ID --to confluence`.

    [confluence]
    url = "https://example.atlassian.net/wiki"   # Cloud; or https://confluence.example.com (Data Center)
    space = "OPS"
    parent_title = "Postmortems"                 # or parent_id = "123456"
    auth = "basic"                               # Cloud: email + API token; "bearer": a Data Center PAT
    user_env = "CONFLUENCE_USER"
    token_env = "CONFLUENCE_TOKEN"

What is published is the library entry, which is already redacted (`library add` redacts); the
page is built by `incidentbook.postmortems.storage`. The page id and version are recorded in the
entry's `meta.json` (`confluence`), committed to the library's git, so publishing again updates
the same page (version + 1). When the page's version in Confluence is higher than the recorded
one, a person edited it since: publishing stops and says so, unless `force`. The update carries
the version it read, so an edit that lands in between is a 409 from Confluence, not a lost edit.

The REST calls go through `atlassian-python-api` (its session, auth and Retry-After handling) on
the v1 content API, which Cloud and Data Center both serve.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from incidentbook.errors import BadInput, IncidentbookError, NotConfigured


class PublishError(IncidentbookError):
    """Confluence refused or failed a publishing step (the message says which and what to do)."""


class PageEdited(PublishError):
    """The page was edited in Confluence since incidentbook last published it."""


def describe_error(e: BaseException, base_url: str = "") -> str:
    """One line for a Confluence failure: the HTTP status and what to do about it."""
    resp = getattr(e, "response", None)
    if resp is None:
        reason = getattr(e, "reason", None)
        resp = getattr(reason, "response", None)
    status = getattr(resp, "status_code", None)
    where = f" at {base_url}" if base_url else ""
    if status == 401:
        return f"Confluence{where} rejected the credentials (401); check the user and token variables of [confluence]"
    if status == 403:
        return f"Confluence{where} refused (403); the account needs permission on the space"
    if status == 404:
        return f"Confluence{where} has no such page or space (404)"
    if status == 409:
        return f"Confluence{where} reported a version conflict (409): the page changed while publishing"
    if status == 429:
        return f"Confluence{where} is rate limiting (429) even after waiting as Retry-After asked; try again later"
    if status is not None:
        return f"Confluence{where} answered HTTP {status}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    name = type(e).__name__
    if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError"):
        return f"cannot reach Confluence{where} ({name}); check [confluence] url and the network"
    return f"{name}: {str(e)[:200]}"


def confluence_client(cfg: Any) -> Any:
    """An `atlassian-python-api` Confluence client from `[confluence]` and the token variables."""
    c = cfg.confluence
    if not c.url:
        raise NotConfigured("publishing to Confluence needs [confluence] url and space in incidentbook.toml "
                            "(see docs/confluence.md)")
    if not c.space:
        raise NotConfigured("[confluence] space is empty; set the space key, e.g. space = \"OPS\"")
    try:
        from atlassian.confluence import ConfluenceServer
    except ImportError:
        raise NotConfigured("Confluence support needs: pip install incidentbook[confluence]") from None
    from incidentbook.config import secret_from_env

    token = secret_from_env(c.token_env, "[confluence] token_env")
    # The v1 content API (rest/api/content) is the same on Cloud (…/wiki) and Data Center, so the
    # Server flavour of the client serves both; Cloud is only a matter of basic auth.
    common = {"timeout": c.timeout_s, "verify_ssl": c.verify_tls, "retry_with_header": True,
              "max_backoff_seconds": c.max_retry_wait_s, "backoff_and_retry": False}
    if c.auth == "bearer":
        return ConfluenceServer(c.url, token=token, **common)
    user = secret_from_env(c.user_env, "[confluence] user_env")
    return ConfluenceServer(c.url, username=user, password=token, **common)


@dataclass
class PublishResult:
    """What `publish_confluence` did."""

    incident_id: str
    page_id: str
    version: int
    url: str
    created: bool
    title: str
    labels: list[str]
    attachments: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _call(what: str, fn: Any, *args: Any, base_url: str = "", **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except IncidentbookError:
        raise
    except Exception as e:  # noqa: BLE001 - requests/atlassian errors become one line naming the step
        raise PublishError(f"could not {what}: {describe_error(e, base_url)}") from None


def _parent_id(client: Any, cfg: Any) -> str | None:
    c = cfg.confluence
    if c.parent_id:
        return str(c.parent_id)
    if not c.parent_title:
        return None
    pid = _call(f"look up the parent page {c.parent_title!r}", client.get_page_id, c.space, c.parent_title,
                base_url=c.url)
    if pid is None:
        raise BadInput(f"[confluence] parent_title {c.parent_title!r}: no such page in space {c.space}; "
                       "create it or set parent_id")
    return str(pid)


def _page_url(cfg: Any, reply: dict[str, Any]) -> str:
    links = reply.get("_links") or {}
    webui = str(links.get("webui") or "")
    base = str(links.get("base") or cfg.confluence.url).rstrip("/")
    return base + webui if webui.startswith("/") else webui or base


def _attachment_name(name: str, data: bytes) -> str:
    # A content hash in the name: an unchanged chart is not uploaded again on re-publish.
    stem, _, ext = name.rpartition(".")
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:10]}.{ext}"


def publish_confluence(cfg: Any, store: Any, incident_id: str, *, force: bool = False,
                       client: Any = None) -> PublishResult:
    """Create or update the Confluence page of a library entry; record the page id/version in its meta.

    PageEdited (exit 1) when the page was edited in Confluence since the last publish and not `force`.
    """
    from incidentbook.postmortems.draft import read_notebook
    from incidentbook.postmortems.library import Library
    from incidentbook.postmortems.storage import build_page

    c = cfg.confluence
    library = Library.from_config(cfg)
    entry = library.get(incident_id)
    client = client or confluence_client(cfg)
    nb = read_notebook(entry.path / "postmortem.ipynb")
    ref = str(entry.path.relative_to(library.path) / "postmortem.html")
    page = build_page(entry.meta, nb, ref)
    for att in page.attachments:
        old, att.name = att.name, _attachment_name(att.name, att.data)
        page.body = page.body.replace(f'ri:filename="{old}"', f'ri:filename="{att.name}"')
    recorded = dict(entry.meta.get("confluence") or {})
    notes = list(page.notes)
    created = False
    reply: dict[str, Any]
    if recorded.get("page_id") and recorded.get("space", c.space) == c.space:
        pid = str(recorded["page_id"])
        try:
            current = client.get(f"rest/api/content/{pid}", params={"expand": "version"})
        except Exception as e:  # noqa: BLE001
            if getattr(getattr(e, "response", None), "status_code", None) == 404:
                current = None
            else:
                raise PublishError(f"could not read page {pid}: {describe_error(e, c.url)}") from None
        if current is None:
            notes.append(f"page {pid} no longer exists in Confluence; a new page was created")
            recorded = {}
        else:
            remote = int((current.get("version") or {}).get("number") or 0)
            mine = int(recorded.get("version") or 0)
            if remote > mine and not force:
                raise PageEdited(
                    f"{entry.id}: the Confluence page {pid} was edited there since the last publish "
                    f"(version {remote}, incidentbook published version {mine}); nothing was overwritten. "
                    f"Copy those edits into the library entry, or run again with --force to replace them")
            if remote > mine:
                notes.append(f"replaced edits made in Confluence (version {remote} > published {mine}) because of --force")
            data = {"id": pid, "type": "page", "title": page.title,
                    "body": {"storage": {"value": page.body, "representation": "storage"}},
                    "version": {"number": remote + 1, "minorEdit": False,
                                "message": f"published from the incidentbook library ({entry.id})"}}
            reply = _call(f"update page {pid}", client.put, f"rest/api/content/{pid}", data=data, base_url=c.url)
    if not recorded.get("page_id"):
        parent = _parent_id(client, cfg)
        existing = _call("look for an existing page with this title", client.get_page_id, c.space, page.title,
                         base_url=c.url)
        if existing:
            raise PublishError(f"a page titled {page.title!r} already exists in space {c.space} (id {existing}) "
                               f"but {entry.id}'s library entry does not record it; rename or delete that page, "
                               "then publish again")
        reply = _call(f"create the page in space {c.space}", client.create_page, c.space, page.title, page.body,
                      parent_id=parent, representation="storage", base_url=c.url)
        created = True
    page_id = str(reply.get("id"))
    version = int((reply.get("version") or {}).get("number") or 1)
    uploaded = []
    for att in page.attachments:
        have = _call(f"list the attachments of page {page_id}", client.get,
                     f"rest/api/content/{page_id}/child/attachment", params={"filename": att.name}, base_url=c.url)
        if any(r.get("title") == att.name for r in (have or {}).get("results", [])):
            continue
        _call(f"attach {att.name}", client.attach_content, att.data, att.name, content_type=att.content_type,
              page_id=page_id, comment=f"chart of {entry.id}", base_url=c.url)
        uploaded.append(att.name)
    for label in page.labels:
        _call(f"label the page {label!r}", client.set_page_label, page_id, label, base_url=c.url)
    url = _page_url(cfg, reply)
    entry.meta["confluence"] = {"page_id": page_id, "version": version, "space": c.space, "url": url,
                                "title": page.title,
                                "published": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    meta_path = entry.path / "meta.json"
    meta_path.write_text(json.dumps(entry.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if library.is_repo():
        rel = str(meta_path.relative_to(library.path))
        library._git("add", "--", rel)
        library._git("commit", "-q", "-m", f"Publish {entry.id} to Confluence (page {page_id}, version {version})",
                     "--", rel)
    try:
        store.add_event(entry.id, "postmortem_published",
                        f"postmortem {'published' if created else 'updated'} in Confluence: {url}",
                        data={"page_id": page_id, "version": version, "url": url, "space": c.space})
    except IncidentbookError:
        notes.append("the incident is not in this workspace's store; the timeline was not updated")
    return PublishResult(entry.id, page_id, version, url, created, page.title, page.labels,
                         [a.name for a in page.attachments], notes)
