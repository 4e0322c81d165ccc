"""`incidentbook store check|backup|restore`: look after the SQLite incident store.

`check` reads every page (`PRAGMA integrity_check`) and compares the incident directories on
disk with the database. `backup` uses SQLite's online backup API, so it is consistent while
`serve` keeps writing. `restore` checks the backup first, never deletes the current file (it is
moved aside as `<name>.replaced-<time>`), and is refused while the store is in use. PostgreSQL
stores are looked after with PostgreSQL's own tools (`pg_dump`, `pg_restore`); `check` still
reports whether the database answers and its schema revision.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.errors import BadInput, NotFound
from incidentbook.incidents.store import (
    HEAD_REVISION,
    SQLITE_HEADER,
    StoreDamaged,
    StoreError,
    _sqlite_path,
    check_sqlite_file,
    normalise_url,
)

__all__ = ["StoreCheck", "backup_store", "check_store", "restore_store"]


@dataclass
class StoreCheck:
    """What `store check` found; `ok` is False when any problem was found."""

    store: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    revision: str | None = None
    incidents: int | None = None
    incident_dirs: int = 0
    failed_items: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `--json` shape."""
        return {"store": self.store, "ok": self.ok, "problems": self.problems, "revision": self.revision,
                "head_revision": HEAD_REVISION, "incidents": self.incidents,
                "incident_dirs": self.incident_dirs, "failed_items": self.failed_items}


def _integrity(path: Path) -> list[str]:
    """`PRAGMA integrity_check` of a file opened read-only; [] when it is intact."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return [str(e)]
    return [] if rows == ["ok"] else rows[:20]


def check_store(url: str, incidents_dir: Path | None = None) -> StoreCheck:
    """Check the store at `url` without changing it."""
    from incidentbook.incidents import Store

    url = normalise_url(url)
    path = _sqlite_path(url)
    dirs = sorted(p.name for p in incidents_dir.glob("INC-*")) if incidents_dir and incidents_dir.is_dir() else []
    out = StoreCheck(store=str(path) if path else url.split("@")[-1], ok=True, incident_dirs=len(dirs))
    if path is not None:
        try:
            check_sqlite_file(path, incidents_dir)
        except StoreDamaged as e:
            out.ok, out.problems = False, [str(e)]
            return out
        if not path.exists():
            out.problems.append(f"{path} does not exist yet (a new store is created on first use)")
            return out
        bad = _integrity(path)
        if bad:
            out.ok = False
            out.problems.append(f"{path} is corrupted: {'; '.join(bad[:3])}; restore a backup with "
                                "`incidentbook store restore BACKUP`")
            return out
    try:
        with Store(url, migrate=False, incidents_dir=incidents_dir) as store:
            out.revision = store.schema_revision()
            if out.revision == HEAD_REVISION:
                out.incidents = store.count_incidents()
                out.failed_items = store.count_failed_work_items()
                known = {i.id for i in store.list_incidents(limit=max(1, len(dirs) + out.incidents))}
                missing = [d for d in dirs if d not in known]
                if missing:
                    out.ok = False
                    out.problems.append(
                        f"{len(missing)} incident directories have no row in the store (first: {missing[0]}); "
                        "the store is older than them: restore a newer backup")
    except StoreError as e:
        out.ok, out.problems = False, [*out.problems, str(e)]
    if out.revision not in (None, HEAD_REVISION):
        out.problems.append(f"schema revision {out.revision} is not {HEAD_REVISION}; it is upgraded on next open")
    return out


def _require_sqlite(url: str, verb: str) -> Path:
    path = _sqlite_path(normalise_url(url))
    if path is None:
        raise BadInput(f"`store {verb}` works on SQLite stores; for PostgreSQL use pg_dump / pg_restore")
    return path


def backup_store(url: str, dest: Path | None = None) -> Path:
    """Copy the SQLite store to `dest` (default: backups/ beside it, timestamped) while it is in use."""
    path = _require_sqlite(url, "backup")
    check_sqlite_file(path)
    if not path.exists():
        raise NotFound(f"incident store {path} does not exist; nothing to back up")
    if dest is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        dest = path.parent / "backups" / f"{path.stem}-{stamp}.db"
    if dest.exists():
        raise BadInput(f"{dest} already exists; give a new backup file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
    except sqlite3.DatabaseError as e:
        tmp.unlink(missing_ok=True)
        raise StoreDamaged(f"cannot back up {path}: {e}; run `incidentbook store check`") from None
    finally:
        src.close()
    tmp.replace(dest)
    return dest


def restore_store(url: str, backup: Path) -> Path:
    """Put `backup` in place of the SQLite store; returns where the previous file was moved."""
    path = _require_sqlite(url, "restore")
    if not backup.is_file():
        raise NotFound(f"backup {backup} does not exist; give a file written by `incidentbook store backup`")
    with backup.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BadInput(f"{backup} is not an SQLite database; give a file written by `incidentbook store backup`")
    bad = _integrity(backup)
    if bad:
        raise BadInput(f"backup {backup} is itself corrupted ({bad[0]}); pick another backup")
    if path.exists() and path.stat().st_size > 0:
        _refuse_if_in_use(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.replaced-{stamp}")
    if path.exists():
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.replace(aside.with_name(aside.name + suffix))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".restoring")
    shutil.copyfile(backup, tmp)
    tmp.replace(path)
    return aside


def _refuse_if_in_use(path: Path) -> None:
    """BadInput if another process holds the store open for writing (a running `serve`)."""
    try:
        conn = sqlite3.connect(path, timeout=0.5)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.rollback()
        finally:
            conn.close()
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise BadInput(f"{path} is in use (is `incidentbook serve` running?); stop it, then restore") from None
    except sqlite3.DatabaseError:
        pass  # damaged: that is why it is being restored
