"""History at hypothesis time: the library's search plus, when configured, the Confluence space (CQL).

Investigators call `history.search(text)`; `History` answers from the git library first and then
from Confluence, so the board can cite past postmortems that live only there. Confluence is
optional evidence: when it is unreachable or refuses the credentials the search still returns
the library's hits, and `History.unavailable` holds one line saying which source was missing and
why (investigators show it as a note). Nothing here raises into an investigation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"[^\W_][\w.:/-]*", re.UNICODE)
MAX_CQL_WORDS = 8


def cql_quote(text: str) -> str:
    """A CQL string literal (double quotes; backslash and quote escaped; control characters dropped)."""
    text = "".join(ch for ch in text if ch.isprintable())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cql_for(space: str, query: str, any_word: bool = False) -> str | None:
    """The CQL of a history search: pages in `space` whose text has every word of the query.

    Every word, as the library's search does: "catalog bad_deploy" must not cite every past
    page that merely mentions catalog. `any_word` for "similar incidents" lookups that rank by
    shared words, like `Library.similar_incidents`.
    """
    words = list(dict.fromkeys(w for w in _WORD.findall(query) if len(w) > 1))[:MAX_CQL_WORDS]
    if not words:
        return None
    every = (" or " if any_word else " and ").join(f"text ~ {cql_quote(w)}" for w in words)
    return f"space = {cql_quote(space)} and type = page and ({every}) order by lastmodified desc"


@dataclass
class ConfluenceHistory:
    """Past postmortems in one Confluence space, found with CQL (`/rest/api/search`)."""

    client: Any
    space: str
    base_url: str
    limit: int = 5
    unavailable: list[str] = field(default_factory=list)

    def search(self, query: str, any_word: bool = False) -> list[dict[str, Any]]:
        """Pages matching `query`, newest first; [] plus a note in `unavailable` when Confluence fails."""
        cql = cql_for(self.space, query, any_word)
        if cql is None:
            return []
        from incidentbook.postmortems.confluence import describe_error

        try:
            reply = self.client.cql(cql, limit=self.limit, excerpt="highlight")
        except Exception as e:  # noqa: BLE001 - history is optional evidence, never fatal
            note = f"history source unavailable: Confluence space {self.space} ({describe_error(e, self.base_url)})"
            if note not in self.unavailable:
                self.unavailable.append(note)
            return []
        out = []
        for r in (reply or {}).get("results", [])[: self.limit]:
            content = r.get("content") or {}
            webui = (content.get("_links") or {}).get("webui") or r.get("url") or ""
            title = str(content.get("title") or r.get("title") or "")
            out.append({"id": f"confluence:{content.get('id', '')}", "title": title,
                        "summary": _plain(r.get("excerpt") or ""), "source": "confluence",
                        "link": (self.base_url.rstrip("/") + webui) if webui.startswith("/") else webui,
                        "space": self.space, "last_modified": r.get("lastModified") or ""})
        return out


def _plain(text: str) -> str:
    return re.sub(r"@@@(end)?hl@@@|<[^>]+>", "", str(text)).strip()[:500]


@dataclass
class History:
    """The library and (optionally) Confluence behind one `search`, as investigators expect."""

    library: Any = None
    confluence: ConfluenceHistory | None = None

    @property
    def unavailable(self) -> list[str]:
        """One line per history source that could not be searched (empty when all answered)."""
        return list(self.confluence.unavailable) if self.confluence is not None else []

    def search(self, query: str) -> list[dict[str, Any]]:
        """Library hits (every word, best first, as `Library.search`), then Confluence pages not among them."""
        hits: list[dict[str, Any]] = []
        if self.library is not None:
            try:
                hits = [dict(h, source="library") for h in self.library.search(query)]
            except Exception:  # noqa: BLE001 - a broken library index must not stop an investigation
                hits = []
        if self.confluence is not None:
            ids = {str(h.get("id", "")).upper() for h in hits}
            for page in self.confluence.search(query):
                # a page published from the library carries the incident id first in its title
                if page["title"].split(":", 1)[0].strip().upper() not in ids:
                    hits.append(page)
        return hits


def confluence_history(cfg: Any) -> ConfluenceHistory | None:
    """The Confluence history source of `[confluence]`, or None when it is not configured."""
    c = cfg.confluence
    if not (c.url and c.space and c.search_history):
        return None
    from incidentbook.postmortems.confluence import confluence_client

    try:
        client = confluence_client(cfg)
    except Exception as e:  # noqa: BLE001 - e.g. the token variable unset: say so, keep investigating
        h = ConfluenceHistory(None, c.space, c.url, c.search_limit)
        h.unavailable.append(f"history source unavailable: Confluence space {c.space} ({e})")
        h.client = _Refuse(str(e))
        return h
    return ConfluenceHistory(client, c.space, c.url, c.search_limit)


class _Refuse:
    def __init__(self, why: str) -> None:
        self.why = why

    def cql(self, *a: Any, **kw: Any) -> Any:
        raise RuntimeError(self.why)


def history_for(cfg: Any) -> History | None:
    """What investigators consult at hypothesis time: the library (when it has entries) and Confluence."""
    from incidentbook.postmortems.library import Library

    library = None
    try:
        lib = Library.from_config(cfg)
        if lib.path.is_dir() and any(lib.path.iterdir()):
            library = lib
    except Exception:  # noqa: BLE001 - history is optional evidence
        library = None
    confluence = confluence_history(cfg)
    if library is None and confluence is None:
        return None
    return History(library, confluence)
