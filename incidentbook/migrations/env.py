"""Alembic environment for the incident store.

`Store` runs `upgrade head` through alembic's Python API and hands over its own connection in
`config.attributes["connection"]`, so no alembic.ini is needed. For development,
`alembic -x url=sqlite:///path.db -c /dev/null ...` style invocations also work through `-x url=`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from incidentbook.incidents.models import VERSION_TABLE, Base

# Any constant: serialises concurrent `upgrade head` runs on PostgreSQL.
_PG_LOCK_KEY = 0x1C1DB00C

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the database URL: alembic -x url=sqlite:///incidentbook.db upgrade head")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
