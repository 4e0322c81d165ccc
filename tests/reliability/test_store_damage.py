"""A damaged SQLite store is refused with one line naming the file and the fix, never recreated.

Real files, real SQLite: zero bytes, a bad header, corrupted pages, a store missing next to
existing incidents; `store check|backup|restore` on the command line; ids never repeat after a
restore; database errors never print the SQL's parameters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.incidents.store import StoreDamaged
from incidentbook.intake.alertmanager import parse_alertmanager
from tests.reliability.conftest import am_body


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "incidentbook")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                          env={"INCIDENTBOOK_HOME": str(home), "PATH": "/usr/bin:/bin"})


def _workspace(tmp_path: Path, n: int = 3) -> Config:
    cfg = Config(home=tmp_path)
    with Store.from_config(cfg) as store:
        for i in range(n):
            out = store.record_alerts(parse_alertmanager(json.dumps(am_body(f"svc-{i}"))))
            d = cfg.incidents_dir / out.incident.id
            d.mkdir(parents=True)
            (d / "notebook.ipynb").write_text(f"notebook of {out.incident.id}")
    return cfg


def _one_line_refusal(home: Path, db: Path, must: str) -> None:
    out = _cli(home, "incidents", "list")
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(db) in lines[0] and must in lines[0], out.stderr
    assert "store restore" in lines[0] and "Traceback" not in out.stderr


def test_a_zero_byte_store_is_refused_not_recreated(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path)
    db = cfg.home / "incidentbook.db"
    for side in ("-wal", "-shm"):
        db.with_name(db.name + side).unlink(missing_ok=True)
    db.write_bytes(b"")
    with pytest.raises(StoreDamaged, match="empty"):
        Store.from_config(cfg)
    _one_line_refusal(cfg.home, db, "empty (0 bytes)")
    assert db.stat().st_size == 0  # untouched: the operator decides
    assert len(list(cfg.incidents_dir.glob("INC-*/notebook.ipynb"))) == 3


def test_a_store_with_a_bad_header_is_refused(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path)
    db = cfg.home / "incidentbook.db"
    with db.open("r+b") as f:
        f.write(b"garbage garbage garbage!")
    _one_line_refusal(cfg.home, db, "not an SQLite database")


def test_corrupted_pages_are_reported_in_one_line_and_by_store_check(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path, n=40)
    db = cfg.home / "incidentbook.db"
    with Store.from_config(cfg) as s, s._engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with db.open("r+b") as f:  # keep page 1 (header, schema); scribble over the rest
        for off in range(4096, size, 4096):
            f.seek(off)
            f.write(b"\xde\xad\xbe\xef" * 256)
    out = _cli(cfg.home, "incidents", "list")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out
    assert str(db) in out.stderr and "store check" in out.stderr and "Traceback" not in out.stderr
    check = _cli(cfg.home, "store", "check", "--json")
    assert check.returncode == 1
    doc = json.loads(check.stdout)
    assert doc["ok"] is False and any("corrupt" in p or "malformed" in p for p in doc["problems"])


def test_a_missing_store_next_to_incidents_is_refused(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path)
    db = cfg.home / "incidentbook.db"
    for p in cfg.home.glob("incidentbook.db*"):
        p.unlink()
    out = _cli(cfg.home, "incidents", "list")
    assert out.returncode == 1 and "is missing" in out.stderr and "reuse their ids" in out.stderr
    assert not db.exists()  # not silently recreated


def test_backup_and_restore_and_ids_never_repeat(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path, n=2)
    backup = tmp_path / "b.db"
    out = _cli(cfg.home, "store", "backup", str(backup), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"backup": str(backup)}
    assert _cli(cfg.home, "store", "backup", str(backup)).returncode == 2  # never overwrites
    # More incidents after the backup, then the store is lost and the backup restored.
    with Store.from_config(cfg) as store:
        later = store.record_alerts(parse_alertmanager(json.dumps(am_body("later")))).incident.id
    (cfg.incidents_dir / later).mkdir()
    (cfg.incidents_dir / later / "notebook.ipynb").write_text("the later incident's notebook")
    (cfg.home / "incidentbook.db").write_bytes(b"")
    restored = _cli(cfg.home, "store", "restore", str(backup), "--json")
    assert restored.returncode == 0, restored.stderr
    assert Path(json.loads(restored.stdout)["previous"]).exists()  # the old file is kept aside
    check = json.loads(_cli(cfg.home, "store", "check", "--json").stdout)
    assert check["incidents"] == 2 and check["ok"] is False and later in " ".join(check["problems"])
    with Store.from_config(cfg) as store:
        new = store.record_alerts(parse_alertmanager(json.dumps(am_body("newest")))).incident.id
    assert new != later and not (cfg.incidents_dir / new).exists()
    assert (cfg.incidents_dir / later / "notebook.ipynb").read_text() == "the later incident's notebook"


def test_restore_refuses_a_corrupted_backup(tmp_path: Path) -> None:
    cfg = _workspace(tmp_path, n=1)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all")
    out = _cli(cfg.home, "store", "restore", str(bad))
    assert out.returncode == 2 and "not an SQLite database" in out.stderr
    assert _cli(cfg.home, "incidents", "list").returncode == 0  # the store in place is untouched


def test_database_errors_never_carry_the_sql_parameters(tmp_path: Path) -> None:
    from incidentbook.intake.queue import describe_error

    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        with pytest.raises(Exception) as caught, store._session(write=True) as s:
            s.execute(text("INSERT INTO id_counters(day, last) VALUES (:d, :n)"),
                      {"d": "SECRET-alert-text-42", "n": None})
    assert "SECRET-alert-text-42" not in str(caught.value)
    assert "SECRET-alert-text-42" not in describe_error(caught.value)
    assert "NOT NULL" in describe_error(caught.value)


def test_a_second_store_in_one_process_keeps_the_first_ones_locks(tmp_path):
    """Opening the store twice in one process (a fixture and a command, a kernel and its magic)
    must not drop the first connection's SQLite locks: when it did, another process writing and
    exiting deleted the WAL under the first, whose reads went stale and then 'malformed'."""
    cfg = _workspace(tmp_path, n=1)
    first = Store.from_config(cfg)
    iid = first.list_incidents()[0].id
    assert first.timeline(iid)  # the first store holds a live connection (and its locks)
    second = Store.from_config(cfg)  # the same file again, in the same process
    second.timeline(iid)
    code = ("import sys; from incidentbook.incidents import Store; "
            "s = Store(sys.argv[1]); s.add_event(sys.argv[2], 'note', 'written by another process'); s.close()")
    subprocess.run([sys.executable, "-c", code, first.url, iid], check=True, timeout=120)
    first.add_event(iid, "note", "written here afterwards")
    assert "written by another process" in [e.summary for e in first.timeline(iid)]
    with Store.from_config(cfg) as fresh:
        seen = [e.summary for e in fresh.timeline(iid)]
    assert "written by another process" in seen and "written here afterwards" in seen
    second.close()
    first.close()
