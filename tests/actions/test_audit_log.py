"""The audit log's hash chain: every kind of tampering is caught at the first bad entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentbook.actions import AuditLog, verify


@pytest.fixture
def log(tmp_path: Path) -> Path:
    a = AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        a.append("executed", user="alice", action_id=f"ACT-{i}", summary=f"scale shop/checkout to {i + 3}")
    return a.path


def test_intact_log_verifies(log: Path) -> None:
    v = verify(log)
    assert v.ok and v.entries == 5 and v.first_bad is None
    assert "5 entries" in str(v)


def test_appends_chain_to_the_previous_entry(log: Path) -> None:
    entries = AuditLog(log).entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:]))


def test_changed_byte_names_the_entry(log: Path) -> None:
    lines = log.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"to 5", b"to 9")
    log.write_bytes(b"\n".join(lines))
    v = verify(log)
    assert not v.ok and v.first_bad == 3 and "modified" in v.reason
    assert "entry 3" in str(v)


def test_dropped_line_names_the_entry_after_the_gap(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    del lines[1]
    log.write_text("".join(lines))
    v = verify(log)
    assert not v.ok and v.first_bad == 2


def test_swapped_lines_name_the_first_swapped_entry(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    log.write_text("".join(lines))
    v = verify(log)
    assert not v.ok and v.first_bad == 4


def test_rewritten_entry_with_recomputed_hash_breaks_the_next_link(log: Path) -> None:
    import json

    from incidentbook.actions.audit import entry_hash

    lines = log.read_text().splitlines()
    e = json.loads(lines[1])
    e["user"] = "mallory"
    e["hash"] = entry_hash(e)
    lines[1] = json.dumps(e)
    log.write_text("\n".join(lines) + "\n")
    v = verify(log)
    assert not v.ok and v.first_bad == 3


def test_garbage_line(log: Path) -> None:
    with log.open("a") as f:
        f.write("{not json\n")
    v = verify(log)
    assert not v.ok and v.first_bad == 6 and "JSON" in v.reason
