"""Full-text search over the library: SQLite FTS5, rebuilt from the entries' `meta.json` files.

The library directory is the source of truth; the index (`<library>/.search.sqlite`, ignored by
git) is a cache that is rebuilt whenever the set of entries changed (checked cheaply from the
year directories' modification times) or on demand (`library search --reindex`). FTS5 ships
with Python's sqlite3, needs no server, and ranks with BM25; a team library of tens of
thousands of postmortems is a few megabytes of index.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from incidentbook.errors import BadInput

INDEX_NAME = ".search.sqlite"
SCHEMA_VERSION = 1
#: FTS columns and their BM25 weights (a hit in the title or root cause counts more).
COLUMNS = ("title", "summary", "root_cause", "services", "alertnames", "templates", "tags")
WEIGHTS = (4.0, 2.0, 3.0, 3.0, 3.0, 1.0, 1.0)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_MASK = re.compile(r"<[A-Z*]+>|<\*>")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, severity TEXT NOT NULL, closed TEXT NOT NULL,
  path TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_entries_closed ON entries (closed);
CREATE TABLE IF NOT EXISTS entry_services (rowid INTEGER NOT NULL, service TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_entry_services ON entry_services (service, rowid);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5({", ".join(COLUMNS)}, tokenize = 'unicode61');
"""


def _text(values: Any) -> str:
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    if isinstance(values, dict):
        return " ".join(_text(v) for v in values.values())
    if isinstance(values, Iterable):
        return " ".join(_text(v) for v in values)
    return str(values)


def doc_from_meta(meta: dict[str, Any], path: str) -> dict[str, Any]:
    """The searchable document of one library entry (what a hit returns)."""
    rc = meta.get("root_cause") or {}
    return {
        "id": meta["id"], "title": meta.get("title", ""), "summary": meta.get("summary") or "",
        "severity": meta.get("severity") or "", "services": list(meta.get("services", [])),
        "alertnames": list(meta.get("alertnames", [])), "root_cause": rc.get("statement") or "",
        "root_cause_kind": rc.get("kind") or "unknown", "root_cause_service": rc.get("service") or "",
        "closed": meta.get("closed") or meta.get("opened") or "", "duration_s": meta.get("duration_s"),
        "templates": list(meta.get("log_templates", [])), "tags": list(meta.get("tags", [])), "path": path,
    }


def fts_terms(text: str) -> list[str]:
    """The words of a query or log template, masks (`<NUM>`) dropped, each quoted for FTS5."""
    words = _WORD.findall(_MASK.sub(" ", text))
    return ['"' + w.replace('"', '""') + '"' for w in words]


class SearchIndex:
    """The FTS5 index at `path`. Use `Library.index()` to get one that is up to date."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise BadInput(f"search index {self.path} is unusable ({e}); delete it, it is rebuilt from the library") from None

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def fingerprint(self) -> str:
        """The library fingerprint the index was built from ('' when never built)."""
        row = self.db.execute("SELECT value FROM info WHERE key = 'fingerprint'").fetchone()
        return row[0] if row else ""

    def rebuild(self, docs: Iterable[dict[str, Any]], fingerprint: str) -> int:
        """Replace the whole index with `docs`; returns how many were indexed."""
        with self.db:
            self.db.execute("DELETE FROM entries")
            self.db.execute("DELETE FROM entry_services")
            self.db.execute("DELETE FROM fts")
            n = 0
            for doc in docs:
                self._insert(doc)
                n += 1
            self.db.execute("INSERT OR REPLACE INTO info VALUES ('fingerprint', ?)", (fingerprint,))
            self.db.execute("INSERT OR REPLACE INTO info VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        return n

    def upsert(self, doc: dict[str, Any], fingerprint: str | None = None) -> None:
        """Add or replace one entry."""
        with self.db:
            row = self.db.execute("SELECT rowid FROM entries WHERE id = ?", (doc["id"],)).fetchone()
            if row:
                for table in ("entries", "entry_services", "fts"):
                    self.db.execute(f"DELETE FROM {table} WHERE rowid = ?", (row[0],))
            self._insert(doc)
            if fingerprint is not None:
                self.db.execute("INSERT OR REPLACE INTO info VALUES ('fingerprint', ?)", (fingerprint,))

    def _insert(self, doc: dict[str, Any]) -> None:
        cur = self.db.execute("INSERT INTO entries (id, severity, closed, path, doc) VALUES (?, ?, ?, ?, ?)",
                              (doc["id"], doc.get("severity", ""), doc.get("closed", ""), doc.get("path", ""),
                               json.dumps(doc, sort_keys=True)))
        rowid = cur.lastrowid
        self.db.executemany("INSERT INTO entry_services VALUES (?, ?)", [(rowid, s) for s in doc.get("services", [])])
        self.db.execute(f"INSERT INTO fts (rowid, {', '.join(COLUMNS)}) VALUES (?, {', '.join('?' * len(COLUMNS))})",
                        (rowid, *(_text(doc.get(c)) for c in ("title", "summary", "root_cause")),
                         _text(doc.get("services")), _text(doc.get("alertnames")), _text(doc.get("templates")),
                         _text([doc.get("root_cause_kind"), *doc.get("tags", [])])))

    def search(self, query: str = "", *, service: str | None = None, since: str | None = None,
               severity: str | None = None, limit: int = 20, any_term: bool = False) -> list[dict[str, Any]]:
        """Entries matching every word of `query` (or any, with `any_term`), best first.

        Filters: `service` (exact), `since` (closed on or after, ISO date), `severity` (exact).
        With no query, the newest entries that pass the filters.
        """
        if limit < 1:
            raise BadInput(f"limit must be at least 1, got {limit}")
        terms = fts_terms(query)
        where, params = [], []  # type: ignore[var-annotated]
        if service:
            where.append("e.rowid IN (SELECT rowid FROM entry_services WHERE service = ?)")
            params.append(service)
        if since:
            where.append("e.closed >= ?")
            params.append(since)
        if severity:
            where.append("e.severity = ?")
            params.append(severity)
        if terms:
            match = (" OR " if any_term else " ").join(terms)
            weights = ", ".join(str(w) for w in WEIGHTS)
            sql = (f"SELECT e.doc, bm25(fts, {weights}) AS score FROM fts JOIN entries e ON e.rowid = fts.rowid "
                   f"WHERE fts MATCH ? {''.join(' AND ' + w for w in where)} ORDER BY score LIMIT ?")
            rows = self.db.execute(sql, [match, *params, limit]).fetchall()
        else:
            sql = (f"SELECT e.doc, 0.0 FROM entries e {'WHERE ' + ' AND '.join(where) if where else ''} "
                   "ORDER BY e.closed DESC LIMIT ?")
            rows = self.db.execute(sql, [*params, limit]).fetchall()
        out = []
        for doc, score in rows:
            d = json.loads(doc)
            d["score"] = round(-float(score), 4)
            out.append(d)
        return out

    def count(self) -> int:
        """How many entries are indexed."""
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])


def iter_meta(library: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """Every entry's parsed `meta.json` and its directory (unreadable ones are skipped)."""
    for meta_path in sorted(library.glob("[0-9][0-9][0-9][0-9]/*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("id"):
            yield meta, meta_path.parent
