"""Store fixtures: every store test runs on SQLite and, marked slow, on a real PostgreSQL.

The PostgreSQL cluster is a throwaway one made with Debian's `initdb`/`pg_ctl` in a temporary
directory on a free loopback port (run as the `postgres` user when the tests run as root);
each test gets a fresh database in it.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from incidentbook.incidents import Store
from incidentbook.intake import AlertmanagerPayload, parse_alertmanager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"


@dataclass
class PgCluster:
    host: str
    port: int
    user: str

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{db}"


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if os.environ.get("PG_BINDIR"):
        candidates.insert(0, os.path.join(os.environ["PG_BINDIR"], "initdb"))
    for c in candidates:
        if os.access(c, os.X_OK):
            return Path(c).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql); "
                    "PostgreSQL store tests skipped")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no `postgres` user to run initdb as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="incidentbook-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = base / "data"
    port = _free_port()
    user = "postgres" if owner is not None else pwd.getpwuid(os.geteuid()).pw_name

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
            "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", opts, "-w",
            "-t", "60", "start")
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text(errors="replace") if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}\n{log}")
    try:
        yield PgCluster("127.0.0.1", port, user)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    import psycopg

    name = "ib_" + uuid.uuid4().hex[:12]
    admin = f"host={pg_cluster.host} port={pg_cluster.port} user={pg_cluster.user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'incidentbook.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _make_payload(group_key: str = "{}:{alertname=\"HighErrorRate\"}", status: str = "firing",
                 alerts: list[tuple[str, str]] | None = None) -> AlertmanagerPayload:
    """The checkout fixture with another group key and alerts given as (fingerprint, status)."""
    doc = json.loads((FIXTURES / "checkout_firing.json").read_bytes())
    template = doc["alerts"][0]
    doc["groupKey"] = group_key
    doc["status"] = status
    doc["alerts"] = []
    for fp, st in alerts or [("f0", status)]:
        a = json.loads(json.dumps(template))
        a["fingerprint"] = fp
        a["status"] = st
        a["labels"]["pod"] = f"checkout-{fp}"
        if st == "resolved":
            a["endsAt"] = "2026-03-14T10:00:00Z"
        doc["alerts"].append(a)
    return parse_alertmanager(json.dumps(doc))


@pytest.fixture(name="make_payload")
def make_payload_fixture() -> Callable[..., AlertmanagerPayload]:
    """Build a payload: make_payload(group_key, status, alerts=[(fingerprint, status), ...])."""
    return _make_payload


@pytest.fixture
def fixture_payload() -> Callable[[str], AlertmanagerPayload]:
    """Load tests/fixtures/alerts/NAME as a parsed payload."""
    return lambda name: parse_alertmanager((FIXTURES / name).read_bytes())
