"""Alembic migrations: they build the schema from an empty database, and match the models."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from incidentbook.errors import ConfigError
from incidentbook.incidents import Store, StoreError
from incidentbook.incidents.models import VERSION_TABLE, Base
from incidentbook.incidents.store import MIGRATIONS_DIR

TABLES = {"incidents", "alerts", "timeline_events", "runbook_runs", "payloads", "id_counters"}


def head() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    rev = ScriptDirectory.from_config(cfg).get_current_head()
    assert rev is not None
    return rev


def test_migrations_live_inside_the_package() -> None:
    import incidentbook

    pkg = Path(incidentbook.__file__).parent
    assert MIGRATIONS_DIR.parent == pkg
    assert (MIGRATIONS_DIR / "env.py").is_file() and any((MIGRATIONS_DIR / "versions").glob("*.py"))


def test_opening_an_empty_database_creates_the_schema(store_url: str) -> None:
    bare = Store(store_url, migrate=False)
    try:
        assert bare.schema_revision() is None
        assert not TABLES & set(inspect(bare._engine).get_table_names())
        bare.upgrade()
        assert bare.schema_revision() == head()
        assert TABLES | {VERSION_TABLE} <= set(inspect(bare._engine).get_table_names())
        bare.upgrade()  # idempotent
        assert bare.schema_revision() == head()
    finally:
        bare.close()


def test_models_and_migrations_agree(store: Store) -> None:
    with store._engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], "models changed without a migration: " + repr(diff)


def test_downgrade_and_upgrade_again(store: Store) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store._engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
        conn.commit()
    assert not TABLES & set(inspect(store._engine).get_table_names())
    store.upgrade()
    assert TABLES <= set(inspect(store._engine).get_table_names())


def test_sqlite_store_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(f"sqlite:///{path}") as store:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unsupported_or_malformed_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not supported; use sqlite or postgresql"):
        Store("mysql://u@h/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        Store("incidentbook.db")


def test_postgres_url_without_driver_uses_psycopg() -> None:
    from incidentbook.incidents.store import normalise_url

    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(StoreError) as info:
        Store(f"postgresql+psycopg://ib:s3cret@127.0.0.1:{port}/ib")
    msg = str(info.value)
    assert "s3cret" not in msg and "unavailable" in msg and "[store] url" in msg


def test_head_revision_constant_matches_the_scripts() -> None:
    """Store.upgrade skips Alembic when the database is at HEAD_REVISION: it must be the real head."""
    from incidentbook.incidents.store import HEAD_REVISION

    assert HEAD_REVISION == head(), "a new migration was added: set HEAD_REVISION in incidents/store.py"
