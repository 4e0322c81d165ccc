"""The action audit log: `<home>/audit.jsonl`, append-only and hash-chained.

Each line is one JSON object with `seq` (1, 2, …), `prev` (the previous entry's `hash`, or 64
zeros for the first) and `hash` (SHA-256 of the entry's canonical JSON without `hash`). Changing
a byte, dropping a line or reordering lines breaks the chain at the first bad entry, which
`verify` names. Appends take an exclusive lock so several kernels can share one log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.errors import IncidentbookError

GENESIS = "0" * 64


class AuditLogCorrupt(IncidentbookError):
    """The audit log's hash chain is broken (tampered with, truncated in the middle, reordered)."""


def _canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    """The SHA-256 hex digest an entry's `hash` field must hold."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Verification:
    """The result of `verify`: `ok`, how many entries were good, and the first bad one."""

    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries} entries, hash chain verified"
        return f"audit log broken at entry {self.first_bad}: {self.reason}"


def _read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def verify(path: str | Path) -> Verification:
    """Check the whole hash chain of the audit log at `path`; name the first bad entry."""
    prev = GENESIS
    lines = _read_lines(Path(path))
    for n, raw in enumerate(lines, 1):
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Verification(False, n - 1, n, "not valid JSON (edited by hand?)")
        if not isinstance(entry, dict) or "hash" not in entry:
            return Verification(False, n - 1, n, "not an audit entry (no hash)")
        if entry.get("seq") != n:
            return Verification(False, n - 1, n, f"sequence number {entry.get('seq')!r} where {n} was expected (line dropped or moved)")
        if entry.get("prev") != prev:
            return Verification(False, n - 1, n, "does not chain to the entry before it (line dropped, inserted or moved)")
        if entry_hash(entry) != entry["hash"]:
            return Verification(False, n - 1, n, "content does not match its hash (entry was modified)")
        prev = entry["hash"]
    return Verification(True, len(lines))


class AuditLog:
    """Append-only access to one audit log file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one entry (`event` plus `fields`) under a lock and return it with its hash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            lines = _read_lines(self.path)
            prev, seq = GENESIS, 1
            if lines:
                try:
                    last = json.loads(lines[-1].decode("utf-8"))
                    prev, seq = str(last["hash"]), int(last["seq"]) + 1
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    raise AuditLogCorrupt(
                        f"{self.path}: last line is not a valid audit entry; run "
                        "incidentbook.actions.verify() and restore the log from backup"
                    ) from None
            entry: dict[str, Any] = {"seq": seq, "time": _now(), "event": event, **fields, "prev": prev}
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
            return entry
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (unparseable lines are skipped; `verify` reports them)."""
        out = []
        for raw in _read_lines(self.path):
            try:
                out.append(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
        return out
