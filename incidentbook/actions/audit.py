"""The action audit log: `<home>/audit.jsonl`, append-only, hash-chained and keyed.

Each line is one JSON object with `seq` (1, 2, …), `prev` (the previous entry's `hash`, or 64
zeros for the first), `hash` (SHA-256 of the entry's canonical JSON without `hash` and `mac`)
and, when the log is written with the broker's key, `mac` (HMAC-SHA256 of the same JSON plus the
hash). Changing a byte, dropping a line or reordering lines breaks the chain at the first bad
entry, which `verify` names. Without the key nobody can write an entry that verifies, so a
recomputed chain or a hand-appended line is caught. After each append the head (`seq`, `hash`,
itself keyed) is stored apart from the log, in the store's `audit_checkpoints` table: deleting the
tail or truncating the file is caught as the missing range. Appends take an exclusive lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from incidentbook.errors import IncidentbookError

GENESIS = "0" * 64


class AuditLogCorrupt(IncidentbookError):
    """The audit log's hash chain is broken (tampered with, truncated in the middle, reordered)."""


KEY_ENV = "INCIDENTBOOK_AUDIT_KEY"
KEY_FILE = "audit.key"


def _canonical(entry: dict[str, Any], keep_hash: bool = False) -> bytes:
    body = {k: v for k, v in entry.items() if k != "mac" and (keep_hash or k != "hash")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    """The SHA-256 hex digest an entry's `hash` field must hold."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


def entry_mac(key: bytes, entry: dict[str, Any]) -> str:
    """The HMAC-SHA256 hex digest an entry's `mac` field must hold under `key`."""
    return hmac.new(key, _canonical(entry, keep_hash=True), hashlib.sha256).hexdigest()


def checkpoint_mac(key: bytes, log_id: str, seq: int, head: str) -> str:
    """The keyed digest of one checkpoint (so a row edited in the store does not verify)."""
    return hmac.new(key, f"{log_id}\n{seq}\n{head}".encode(), hashlib.sha256).hexdigest()


def load_audit_key(home: str | Path, *, create: bool = False) -> bytes | None:
    """The broker's audit key: $INCIDENTBOOK_AUDIT_KEY, else `<home>/broker/audit.key`.

    With `create`, a missing key file is made (32 random bytes, mode 0600 in a 0700 directory).
    Kernels started by `serve` never see the variable; see docs/actions.md for the trust boundary.
    """
    env = os.environ.get(KEY_ENV, "")
    if env:
        return env.encode("utf-8")
    path = Path(home) / "broker" / KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        if not create:
            return None
    except ValueError:
        raise AuditLogCorrupt(f"{path} is not a hex key; restore it from backup (or move it away to start a new log)") from None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


class Anchor(Protocol):
    """Where the checkpoint of a log's head is kept, apart from the log itself."""

    def save(self, log_id: str, seq: int, head: str, mac: str) -> None: ...

    def load(self, log_id: str) -> tuple[int, str, str] | None: ...


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Verification:
    """The result of `verify`: `ok`, how many entries were good, and the first bad one."""

    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number
    reason: str = ""
    missing: tuple[int, int] | None = None  # entries the checkpoint knows and the log lacks
    keyed: bool = False
    anchored: bool = False

    def __str__(self) -> str:
        if self.ok:
            how = "hash chain" + (", keys" if self.keyed else "") + (" and checkpoint" if self.anchored else "")
            note = "" if self.keyed else " (unkeyed check: run it where the broker's key is to catch a recomputed chain)"
            return f"audit log intact: {self.entries} entries, {how} verified{note}"
        if self.missing is not None:
            a, b = self.missing
            return f"audit log broken: entries {a}..{b} are missing ({self.reason})"
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


def verify(path: str | Path, key: bytes | None = None, anchor: Anchor | None = None) -> Verification:
    """Check the audit log at `path`: its hash chain, each entry's MAC (with `key`) and the
    stored checkpoint of its head (with `anchor`). Names the first bad entry or the missing range."""
    prev = GENESIS
    lines = _read_lines(Path(path))
    keyed, anchored = key is not None, anchor is not None
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
        if key is not None:
            mac = entry.get("mac")
            if not isinstance(mac, str):
                return Verification(False, n - 1, n, "has no MAC: it was not written by the broker (appended by hand?)")
            if not hmac.compare_digest(mac, entry_mac(key, entry)):
                return Verification(False, n - 1, n, "MAC does not match: written without the broker's key "
                                    "(chain recomputed or entry forged)")
        prev = entry["hash"]
    if anchor is not None:
        cp = anchor.load(log_id(path))
        if cp is None:
            if lines:
                return Verification(False, len(lines), None, "no checkpoint is stored for a log that has entries "
                                    "(checkpoint deleted, or the log was written without the broker)", keyed=keyed)
        else:
            seq, head, mac = cp
            if key is not None and not hmac.compare_digest(mac, checkpoint_mac(key, log_id(path), seq, head)):
                return Verification(False, len(lines), None, "the stored checkpoint does not verify (edited in the store)",
                                    keyed=keyed)
            if seq > len(lines):
                return Verification(False, len(lines), len(lines) + 1,
                                    f"the checkpoint records {seq} entries, the log has {len(lines)}: tail deleted or "
                                    "file truncated", missing=(len(lines) + 1, seq), keyed=keyed)
            at = json.loads(lines[seq - 1].decode("utf-8")) if seq else {"hash": GENESIS}
            if at.get("hash") != head:
                return Verification(False, len(lines), seq, "differs from the stored checkpoint (log rewritten)",
                                    keyed=keyed)
            if seq < len(lines):
                return Verification(False, len(lines), seq + 1, f"entries {seq + 1}..{len(lines)} were added after the "
                                    "last checkpoint, not by the broker", keyed=keyed)
    return Verification(True, len(lines), keyed=keyed, anchored=anchored)


def log_id(path: str | Path) -> str:
    """The name a log's checkpoint is stored under (its resolved path)."""
    return str(Path(path).expanduser().resolve())


class AuditLog:
    """Append-only access to one audit log file."""

    def __init__(self, path: str | Path, key: bytes | None = None, anchor: Anchor | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.anchor = anchor

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
            if self.key is not None:
                entry["mac"] = entry_mac(self.key, entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
            if self.anchor is not None and self.key is not None:
                lid = log_id(self.path)
                self.anchor.save(lid, seq, entry["hash"], checkpoint_mac(self.key, lid, seq, entry["hash"]))
            return entry
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def verified_entries(self) -> list[dict[str, Any]]:
        """The entries up to the first that fails the chain or, with a key, its MAC (oldest first).

        What the broker acts on: a line appended by hand never verifies, so it is never acted on.
        """
        good: list[dict[str, Any]] = []
        prev = GENESIS
        for n, e in enumerate(self.entries(), 1):
            if not isinstance(e, dict) or e.get("seq") != n or e.get("prev") != prev or e.get("hash") != entry_hash(e):
                break
            if self.key is not None and not (isinstance(e.get("mac"), str)
                                             and hmac.compare_digest(e["mac"], entry_mac(self.key, e))):
                break
            good.append(e)
            prev = e["hash"]
        return good

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (unparseable lines are skipped; `verify` reports them)."""
        out = []
        for raw in _read_lines(self.path):
            try:
                out.append(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
        return out


class StoreAnchor:
    """Checkpoints in the incident store's `audit_checkpoints` table (SQLite or PostgreSQL)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def save(self, log_id: str, seq: int, head: str, mac: str) -> None:
        """Record the log's head (replacing the previous checkpoint)."""
        from sqlalchemy import text

        with self.store._session(True) as s:
            s.execute(text("DELETE FROM audit_checkpoints WHERE log = :log"), {"log": log_id})
            s.execute(text("INSERT INTO audit_checkpoints (log, seq, head, mac, updated_at) "
                           "VALUES (:log, :seq, :head, :mac, :at)"),
                      {"log": log_id, "seq": seq, "head": head, "mac": mac, "at": datetime.now(timezone.utc)})

    def load(self, log_id: str) -> tuple[int, str, str] | None:
        """The stored (seq, head, mac) of the log, or None when none is stored."""
        from sqlalchemy import text

        with self.store._session(False) as s:
            row = s.execute(text("SELECT seq, head, mac FROM audit_checkpoints WHERE log = :log"),
                            {"log": log_id}).first()
        return (int(row[0]), str(row[1]), str(row[2])) if row is not None else None
