"""The incident store: incidents, their alerts, timelines and runbook runs.

SQLite (WAL, busy timeout, `BEGIN IMMEDIATE` for writes) by default; the same code runs on
PostgreSQL (`postgresql+psycopg://…`). The schema is managed by Alembic and upgraded to head
whenever a store is opened. Every method opens and commits its own transaction and returns
plain dataclasses, so callers never hold database sessions.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, case, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from incidentbook.errors import BadInput, ConfigError, IncidentbookError, NotFound
from incidentbook.incidents.models import (
    VERSION_TABLE,
    AlertRow,
    IdCounter,
    IncidentRow,
    PayloadRow,
    RunbookRunRow,
    TimelineEventRow,
    WorkItemRow,
)
from incidentbook.incidents.records import (
    Alert,
    Incident,
    IngestOutcome,
    RunbookRun,
    TimelineEvent,
)

if TYPE_CHECKING:
    from incidentbook.config import Config
    from incidentbook.intake.alertmanager import AlertmanagerPayload

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: The newest Alembic revision. Opening a store already at it skips loading Alembic (most of the
#: cost of opening a store in a fresh kernel); tests/incidents checks it matches the scripts.
HEAD_REVISION = "0004"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ID_RE = re.compile(r"^INC-\d{8}-\d{4,}$")
_WRITE = "incidentbook_write"
_LIST_HINT = "run `incidentbook incidents list` to see incident ids"


class StoreError(IncidentbookError):
    """The incident store cannot be opened or written (database down, locked, unreachable)."""


class StoreDamaged(StoreError):
    """The SQLite file is empty, not a database, corrupted, or missing where incidents exist."""


#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"
_DAMAGE_FIX = ("run `incidentbook store check`, then `incidentbook store restore BACKUP` "
               "(or move the file aside to start an empty store)")


def _sqlite_path(url: str) -> Path | None:
    """The file of a file-backed SQLite URL, else None (PostgreSQL, in-memory)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # _make_engine reports it
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database or ""
    if db in ("", ":memory:") or db.startswith("file:"):
        return None
    return Path(db).expanduser()


def check_sqlite_file(path: Path, incidents_dir: Path | None = None) -> None:
    """Raise StoreDamaged if the store file at `path` cannot be the store it should be.

    A missing file is fine for a new workspace, but not when `incidents_dir` already holds
    incident directories (the database was lost: a new one would repeat their ids).
    """
    if not path.exists():
        if incidents_dir is not None and incidents_dir.is_dir() and any(incidents_dir.glob("INC-*")):
            raise StoreDamaged(f"incident store {path} is missing but {incidents_dir} holds incidents; "
                               f"restore it with `incidentbook store restore BACKUP` (a new empty store "
                               "would reuse their ids)")
        return
    size = path.stat().st_size
    if size == 0:
        raise StoreDamaged(f"incident store {path} is empty (0 bytes); {_DAMAGE_FIX}")
    key = str(path.resolve())
    if key in _OPENED_HERE:
        # Reading the header opens and closes a second descriptor on the file, and closing any
        # descriptor drops every POSIX lock this process holds on it, including the locks of
        # SQLite connections already open here. Another process then believes it is the last
        # user, checkpoints and deletes the WAL under them, and the database reads as malformed.
        # The file was checked when this process first opened it; SQLite reports later damage.
        return
    with path.open("rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise StoreDamaged(f"incident store {path} is not an SQLite database (bad header); {_DAMAGE_FIX}")


#: SQLite files this process has opened (see check_sqlite_file for why that matters).
_OPENED_HERE: set[str] = set()


def _damaged(err: Exception) -> bool:
    """Whether a DBAPI error says the SQLite file is corrupt (not a bad value or a busy lock)."""
    text = str(getattr(err, "orig", err)).lower()
    return any(m in text for m in ("malformed", "not a database", "file is encrypted", "disk i/o error"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_url(url: str) -> str:
    """Accept `postgresql://` / `postgres://` and use psycopg 3 for them; other URLs pass through."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _make_engine(url: str, busy_timeout_s: float) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"store URL {url!r} is not a database URL; use sqlite:///path/incidentbook.db "
            "or postgresql+psycopg://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"store backend {backend!r} is not supported; use sqlite or postgresql")
    safe = parsed.render_as_string(hide_password=True)
    if backend == "postgresql":
        try:
            return create_engine(url, pool_pre_ping=True, hide_parameters=True)
        except NoSuchModuleError:
            raise ConfigError(f"store URL {safe}: unknown driver; use postgresql+psycopg://") from None
        except ModuleNotFoundError as e:
            raise ConfigError(f"PostgreSQL support needs {e.name}: pip install incidentbook[postgres]") from None

    database = parsed.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s}}
    if memory:
        kwargs = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error's text must never carry alert text or secrets bound into the SQL.
    engine = create_engine(url, hide_parameters=True, **kwargs)
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so turn off the driver's own transaction handling.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")  # durable with WAL, much faster
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that later upgrades to a
        # writer can fail with SQLITE_BUSY at once, without waiting for the busy timeout.
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _incident(row: IncidentRow) -> Incident:
    return Incident(
        id=row.id, group_key=row.group_key, title=row.title, status=row.status,  # type: ignore[arg-type]
        severity=row.severity, alertname=row.alertname, service=row.service,
        namespace=row.namespace, labels=dict(row.labels), annotations=dict(row.annotations),
        created=row.created, updated=row.updated, closed_at=row.closed_at,
        closed_by=row.closed_by, summary=row.summary, root_cause=row.root_cause,
        runbook=row.runbook, runbook_status=row.runbook_status,  # type: ignore[arg-type]
        runbook_error=dict(row.runbook_error) if row.runbook_error else None,
        notebook=row.notebook, bundle=row.bundle, external_url=row.external_url,
    )


def _alert(row: AlertRow) -> Alert:
    return Alert(
        incident_id=row.incident_id, fingerprint=row.fingerprint,
        status=row.status,  # type: ignore[arg-type]
        labels=dict(row.labels), annotations=dict(row.annotations), starts_at=row.starts_at,
        ends_at=row.ends_at, generator_url=row.generator_url, first_seen=row.first_seen,
        last_seen=row.last_seen, resolved_at=row.resolved_at, notifications=row.notifications,
    )


def _event(row: TimelineEventRow) -> TimelineEvent:
    return TimelineEvent(
        id=row.id, incident_id=row.incident_id, timestamp=row.timestamp, kind=row.kind,
        actor=row.actor, summary=row.summary, data=dict(row.data),
    )


def _run(row: RunbookRunRow) -> RunbookRun:
    return RunbookRun(
        id=row.id, incident_id=row.incident_id, runbook=row.runbook,
        status=row.status,  # type: ignore[arg-type]
        started=row.started, finished=row.finished, cell_index=row.cell_index,
        ename=row.ename, evalue=row.evalue,
    )


def _redacted_payload(payload: AlertmanagerPayload) -> AlertmanagerPayload:
    """The payload with secrets taken out of its annotations and URLs before it is stored
    (labels are the alerts' identity and are kept)."""
    from incidentbook.intake.alertmanager import parse_alertmanager
    from incidentbook.redact import process_redactor

    redactor = process_redactor()
    doc = json.loads(payload.raw)
    before = json.dumps(doc, sort_keys=True)
    for key in ("commonAnnotations", "externalURL"):
        if key in doc:
            doc[key] = redactor.redact_obj(doc[key])
    for alert in doc.get("alerts") or []:
        if isinstance(alert, dict):
            for key in ("annotations", "generatorURL"):
                if key in alert:
                    alert[key] = redactor.redact_obj(alert[key])
    if json.dumps(doc, sort_keys=True) == before:
        return payload
    return parse_alertmanager(json.dumps(doc))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class Store:
    """The incident store at `url` (SQLite or PostgreSQL); the schema is upgraded on open."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, migrate: bool = True,
                 incidents_dir: Path | None = None) -> None:
        self.url = normalise_url(url)
        self.incidents_dir = incidents_dir
        self.path = _sqlite_path(self.url)
        if self.path is not None:
            check_sqlite_file(self.path, incidents_dir)
            _OPENED_HERE.add(str(self.path.resolve()))
        self._engine = _make_engine(self.url, busy_timeout_s)
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self._write = sessionmaker(self._engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        if migrate:
            self.upgrade()

    @classmethod
    def from_config(cls, cfg: Config) -> Store:
        """The store configured in `cfg` (SQLite in `cfg.home` unless [store] names a URL)."""
        cfg.home.mkdir(parents=True, exist_ok=True)
        return cls(cfg.db_url, incidents_dir=cfg.incidents_dir)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    # ------------------------------------------------------------------ plumbing

    def _unavailable(self, err: DBAPIError) -> StoreError:
        safe = make_url(self.url).render_as_string(hide_password=True)
        reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err).splitlines()[0]
        if _damaged(err):
            return StoreDamaged(f"incident store {self.path or safe} is damaged ({reason}); {_DAMAGE_FIX}")
        return StoreError(
            f"incident store {safe} is unavailable ({reason}); check that the database is "
            "running and [store] url in incidentbook.toml"
        )

    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        try:
            with (self._write if write else self._read)() as s, s.begin():
                yield s
        except OperationalError as e:
            raise self._unavailable(e) from None
        except DatabaseError as e:
            if _damaged(e) and not isinstance(e, (DataError, IntegrityError)):
                raise self._unavailable(e) from None
            raise

    def free_bytes(self) -> int | None:
        """Free space on the filesystem of an SQLite store (None for PostgreSQL or in-memory)."""
        if self.path is None:
            return None
        import shutil

        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (a no-op when it already is)."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        try:
            with self._engine.execution_options(**{_WRITE: True}).connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except (OperationalError, DatabaseError) as e:
            if isinstance(e, OperationalError) or _damaged(e):
                raise self._unavailable(e) from None
            raise

    def _at_head(self) -> bool:
        """Whether the database records HEAD_REVISION, read with one query and no Alembic import."""
        try:
            with self._engine.connect() as conn:
                rows = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        except Exception:  # no version table yet (new database) or unreachable: let Alembic say
            return False
        return [r[0] for r in rows] == [HEAD_REVISION]

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self._engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()

    def _get_row(self, s: Session, incident_id: str, lock: bool = False) -> IncidentRow:
        key = incident_id.strip().upper()
        stmt = select(IncidentRow).where(IncidentRow.id == key)
        if lock:
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).first()
        if row is None:
            hint = "" if _ID_RE.match(key) else " (ids look like INC-20260314-0001)"
            raise NotFound(f"no incident {incident_id!r}{hint}; {_LIST_HINT}")
        return row

    def _next_id(self, s: Session, now: datetime) -> str:
        day = now.strftime("%Y%m%d")
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        # One atomic upsert: concurrent writers queue on the counter row and each gets its own number.
        stmt = (
            insert(IdCounter).values(day=day, last=1)
            .on_conflict_do_update(index_elements=[IdCounter.day], set_={"last": IdCounter.last + 1})
            .returning(IdCounter.last)
        )
        n = s.execute(stmt).scalar_one()
        # A directory for this id already exists (the store was restored from an older backup):
        # never reuse the id, never overwrite that incident's notebook.
        while self.incidents_dir is not None and (self.incidents_dir / f"INC-{day}-{n:04d}").exists():
            n = s.execute(stmt).scalar_one()
        return f"INC-{day}-{n:04d}"

    @staticmethod
    def _add_event(s: Session, incident_id: str, kind: str, summary: str, actor: str,
                   data: dict[str, Any] | None, when: datetime) -> TimelineEventRow:
        from incidentbook.redact import process_redactor

        # Timeline text is shown, exported and archived: no secret is ever persisted in it.
        redactor = process_redactor()
        row = TimelineEventRow(incident_id=incident_id, timestamp=when, kind=kind, actor=actor,
                               summary=redactor.redact(summary), data=redactor.redact_obj(data or {}))
        s.add(row)
        return row

    # ------------------------------------------------------------------ intake

    def record_alerts(self, payload: AlertmanagerPayload, actor: str = "alertmanager") -> IngestOutcome:
        """Persist a webhook notification and fold it into its group's open incident.

        The raw payload is committed first, so it survives any later failure. Then, in one
        transaction: find the open incident for `groupKey` (or open one), add or update its
        alerts by fingerprint, mark resolved ones, and write timeline events. A resolved
        notification never closes an incident; only a human does.
        """
        received = _now()
        payload = _redacted_payload(payload)
        with self._session(write=True) as s:
            prow = PayloadRow(received_at=received, source="alertmanager", group_key=payload.group_key,
                              status=payload.status, raw=payload.raw)
            s.add(prow)
            s.flush()
            payload_id = prow.id
        attempts = 5
        for attempt in range(attempts):
            try:
                with self._session(write=True) as s:
                    return self._apply(s, payload, payload_id, actor, received)
            except IntegrityError:
                # Another writer opened the group's incident (or added the same alert) first;
                # a fresh transaction will see it and update it instead.
                if attempt == attempts - 1:
                    self._payload_failed(payload_id, "conflicting concurrent writes")
                    raise StoreError(
                        "could not record the alerts: concurrent writes kept conflicting; "
                        f"retry (payload {payload_id} is stored)"
                    ) from None
                time.sleep(0.01 * (attempt + 1))
            except Exception as e:
                self._payload_failed(payload_id, f"{type(e).__name__}: {e}")
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _payload_failed(self, payload_id: int, error: str) -> None:
        try:
            with self._session(write=True) as s:
                row = s.get(PayloadRow, payload_id)
                if row is not None:
                    row.error = error[:2000]
        except Exception:  # noqa: BLE001 - best effort; the original error is what matters
            pass

    def _apply(self, s: Session, payload: AlertmanagerPayload, payload_id: int, actor: str,
               now: datetime) -> IngestOutcome:
        gk_hash = _hash(payload.group_key)
        row = s.scalars(
            select(IncidentRow)
            .where(IncidentRow.group_key_hash == gk_hash, IncidentRow.status == "open")
            .with_for_update()
        ).first()
        if row is None and not payload.firing:
            # Only resolutions and nothing open: record them on the group's latest incident
            # (closed by a human already) rather than opening a new one for a finished problem.
            row = s.scalars(
                select(IncidentRow).where(IncidentRow.group_key_hash == gk_hash)
                .order_by(IncidentRow.created.desc()).limit(1).with_for_update()
            ).first()
        created = row is None
        alertname = payload.label("alertname")
        service = payload.label("service") or payload.label("app") or payload.label("job")
        if row is None:
            title = payload.annotation("summary") or alertname
            row = IncidentRow(
                id=self._next_id(s, now), group_key=payload.group_key, group_key_hash=gk_hash,
                title=title, status="open", severity=payload.label("severity"), alertname=alertname,
                service=service, namespace=payload.label("namespace"),
                labels=dict(payload.common_labels or payload.alerts[0].labels),
                annotations=dict(payload.common_annotations or payload.alerts[0].annotations),
                external_url=payload.external_url, created=now, updated=now,
                runbook_status="pending",
            )
            s.add(row)
            s.flush()  # the open-group unique index fires here if another writer won the race
            self._add_event(s, row.id, "incident_opened", f"Incident opened: {title}", actor,
                            {"group_key": payload.group_key, "payload_id": payload_id,
                             "receiver": payload.receiver}, now)
        row.updated = now

        # Only this notification's alerts: an incident in an alert storm holds thousands.
        keys = sorted({a.key for a in payload.alerts})
        existing = {a.fingerprint: a for a in s.scalars(
            select(AlertRow).where(AlertRow.incident_id == row.id, AlertRow.fingerprint.in_(keys)))}
        new: list[str] = []
        updated: list[str] = []
        resolved: list[str] = []
        unchanged: list[str] = []
        for a in payload.alerts:
            key = a.key
            arow = existing.get(key)
            if arow is None:
                arow = AlertRow(
                    incident_id=row.id, fingerprint=key, status=a.status, labels=dict(a.labels),
                    annotations=dict(a.annotations), starts_at=a.starts_at or now, ends_at=a.ends_at,
                    generator_url=a.generator_url, first_seen=now, last_seen=now,
                    resolved_at=now if a.status == "resolved" else None, notifications=1,
                    last_payload_id=payload_id,
                )
                s.add(arow)
                existing[key] = arow
                new.append(key)
                if a.status == "resolved":
                    resolved.append(key)
                continue
            before = (arow.status, arow.annotations, arow.labels, arow.ends_at, arow.generator_url)
            if arow.status != a.status:
                arow.resolved_at = now if a.status == "resolved" else None
            arow.status = a.status
            arow.labels = dict(a.labels)
            arow.annotations = dict(a.annotations)
            arow.ends_at = a.ends_at
            arow.generator_url = a.generator_url
            if a.starts_at is not None:
                arow.starts_at = a.starts_at
            arow.last_seen = now
            arow.notifications += 1
            arow.last_payload_id = payload_id
            if before[0] != a.status and a.status == "resolved":
                resolved.append(key)
            elif before != (arow.status, arow.annotations, arow.labels, arow.ends_at, arow.generator_url):
                updated.append(key)
            else:
                unchanged.append(key)

        s.flush()
        firing_now = int(s.execute(select(func.count()).select_from(AlertRow).where(
            AlertRow.incident_id == row.id, AlertRow.status == "firing")).scalar_one())
        what = f"{alertname} ({service})" if service else alertname
        arrived = [k for k in new if k not in resolved] + updated
        if arrived:
            parts = []
            if [k for k in new if k not in resolved]:
                parts.append(f"{_plural(len([k for k in new if k not in resolved]), 'new alert')}")
            if updated:
                parts.append(f"{len(updated)} updated")
            truncated = (f" ({payload.truncated_alerts} more left out by Alertmanager's max_alerts)"
                         if payload.truncated_alerts else "")
            self._add_event(
                s, row.id, "alert_received",
                f"{what}: {', '.join(parts)}; {firing_now} firing{truncated}", actor,
                {"new": [k for k in new if k not in resolved], "updated": updated,
                 "payload_id": payload_id, "firing": firing_now,
                 "truncated_alerts": payload.truncated_alerts}, now,
            )
        if resolved:
            self._add_event(
                s, row.id, "alert_resolved",
                f"{what}: {_plural(len(resolved), 'alert')} resolved; {firing_now} still firing", actor,
                {"resolved": resolved, "payload_id": payload_id, "firing": firing_now}, now,
            )
        prow = s.get(PayloadRow, payload_id)
        if prow is not None:
            prow.incident_id = row.id
            prow.processed_at = now
        s.flush()
        return IngestOutcome(
            incident=_incident(row), created=created, payload_id=payload_id, new_alerts=new,
            updated_alerts=updated, resolved_alerts=resolved, unchanged_alerts=unchanged,
        )

    # ------------------------------------------------------------------ queries

    def get_incident(self, incident_id: str) -> Incident:
        """One incident by id (case-insensitive); NotFound names the id and how to list them."""
        with self._session(write=False) as s:
            return _incident(self._get_row(s, incident_id))

    def list_incidents(self, status: str | None = None, limit: int = 50, offset: int = 0,
                       open_first: bool = False) -> list[Incident]:
        """Incidents, newest first; `status` is "open", "closed" or None for both.

        `offset` skips that many (pages); `open_first` lists open incidents before closed ones.
        """
        if status not in (None, "open", "closed"):
            raise BadInput(f"unknown incident status {status!r}; use open or closed")
        if limit < 1:
            raise BadInput(f"limit must be at least 1, got {limit}")
        if offset < 0:
            raise BadInput(f"offset must be 0 or more, got {offset}")
        order = [IncidentRow.created.desc(), IncidentRow.id.desc()]
        if open_first:
            order.insert(0, case((IncidentRow.status == "open", 0), else_=1))
        stmt = select(IncidentRow).order_by(*order).limit(limit).offset(offset)
        if status is not None:
            stmt = stmt.where(IncidentRow.status == status)
        with self._session(write=False) as s:
            return [_incident(r) for r in s.scalars(stmt)]

    def alerts(self, incident_id: str) -> list[Alert]:
        """The incident's alerts in the order they were first seen."""
        with self._session(write=False) as s:
            row = self._get_row(s, incident_id)
            stmt = select(AlertRow).where(AlertRow.incident_id == row.id).order_by(AlertRow.id)
            return [_alert(r) for r in s.scalars(stmt)]

    def alert_counts(self, incident_ids: list[str]) -> dict[str, int]:
        """Number of alerts of each incident, counted by the database (one query, no alert rows read)."""
        if not incident_ids:
            return {}
        with self._session(write=False) as s:
            rows = s.execute(select(AlertRow.incident_id, func.count()).where(
                AlertRow.incident_id.in_(incident_ids)).group_by(AlertRow.incident_id))
            counts = {str(i): int(n) for i, n in rows}
        return {i: counts.get(i, 0) for i in incident_ids}

    def timeline(self, incident_id: str) -> list[TimelineEvent]:
        """The incident's timeline, oldest first."""
        with self._session(write=False) as s:
            row = self._get_row(s, incident_id)
            stmt = (select(TimelineEventRow).where(TimelineEventRow.incident_id == row.id)
                    .order_by(TimelineEventRow.timestamp, TimelineEventRow.id))
            return [_event(r) for r in s.scalars(stmt)]

    def runs(self, incident_id: str) -> list[RunbookRun]:
        """The incident's runbook runs, oldest first."""
        with self._session(write=False) as s:
            row = self._get_row(s, incident_id)
            stmt = select(RunbookRunRow).where(RunbookRunRow.incident_id == row.id).order_by(RunbookRunRow.id)
            return [_run(r) for r in s.scalars(stmt)]

    def payloads(self, incident_id: str) -> list[str]:
        """The raw webhook bodies recorded for the incident, oldest first (for replay and audit)."""
        with self._session(write=False) as s:
            row = self._get_row(s, incident_id)
            stmt = select(PayloadRow.raw).where(PayloadRow.incident_id == row.id).order_by(PayloadRow.id)
            return list(s.scalars(stmt))

    def count_failed_work_items(self) -> int:
        """How many intake items are failed (waiting for `intake retry` or `intake drop`)."""
        with self._session(write=False) as s:
            return int(s.execute(select(func.count()).select_from(WorkItemRow).where(
                WorkItemRow.kind == "alert", WorkItemRow.state == "failed")).scalar_one())

    def count_incidents(self, status: str | None = None) -> int:
        """How many incidents there are (optionally with `status`)."""
        stmt = select(func.count()).select_from(IncidentRow)
        if status is not None:
            stmt = stmt.where(IncidentRow.status == status)
        with self._session(write=False) as s:
            return int(s.execute(stmt).scalar_one())

    # ------------------------------------------------------------------ changes

    def add_event(self, incident_id: str, kind: str, summary: str, actor: str = "incidentbook",
                  data: dict[str, Any] | None = None) -> TimelineEvent:
        """Append a timeline event and commit it at once."""
        if not _KIND_RE.match(kind):
            raise BadInput(f"timeline event kind {kind!r} is not lower_snake_case; use e.g. 'note'")
        try:
            json.dumps(data or {})
        except (TypeError, ValueError) as e:
            raise BadInput(f"timeline event data is not JSON-serialisable ({e}); pass plain dicts, lists, strings and numbers") from None
        now = _now()
        with self._session(write=True) as s:
            row = self._get_row(s, incident_id, lock=True)
            row.updated = now
            ev = self._add_event(s, row.id, kind, summary, actor, data, now)
            s.flush()
            return _event(ev)

    def close_incident(self, incident_id: str, actor: str, summary: str | None = None,
                       root_cause: str | None = None) -> Incident:
        """Close an open incident (the only way an incident closes); BadInput if already closed."""
        now = _now()
        with self._session(write=True) as s:
            row = self._get_row(s, incident_id, lock=True)
            if row.status == "closed":
                when = row.closed_at.strftime("%Y-%m-%d %H:%M UTC") if row.closed_at else "earlier"
                raise BadInput(f"{row.id} is already closed (by {row.closed_by} at {when}); nothing to do")
            row.status = "closed"
            row.closed_at = now
            row.closed_by = actor
            row.updated = now
            if summary is not None:
                row.summary = summary
            if root_cause is not None:
                row.root_cause = root_cause
            text = f"Closed by {actor}" + (f": {summary}" if summary else "")
            self._add_event(s, row.id, "closed", text, actor,
                            {"from": "open", "to": "closed", "summary": summary, "root_cause": root_cause}, now)
            s.flush()
            return _incident(row)

    def set_runbook(self, incident_id: str, runbook_name: str, notebook_path: str) -> Incident:
        """Record which runbook the incident uses and where its notebook lives."""
        with self._session(write=True) as s:
            row = self._get_row(s, incident_id, lock=True)
            row.runbook = runbook_name
            row.notebook = str(notebook_path)
            row.updated = _now()
            s.flush()
            return _incident(row)

    def set_bundle(self, incident_id: str, bundle_path: str | None) -> Incident:
        """Record (or clear) the path of the incident's telemetry bundle."""
        with self._session(write=True) as s:
            row = self._get_row(s, incident_id, lock=True)
            row.bundle = str(bundle_path) if bundle_path is not None else None
            row.updated = _now()
            s.flush()
            return _incident(row)

    def start_run(self, incident_id: str, runbook: str) -> int:
        """Record that `runbook` started for the incident; returns the run id for `finish_run`."""
        now = _now()
        with self._session(write=True) as s:
            row = self._get_row(s, incident_id, lock=True)
            run = RunbookRunRow(incident_id=row.id, runbook=runbook, status="running", started=now)
            s.add(run)
            s.flush()
            row.runbook = runbook
            row.runbook_status = "running"
            row.runbook_error = None
            row.updated = now
            self._add_event(s, row.id, "runbook_started", f"Runbook {runbook} started", "incidentbook",
                            {"run_id": run.id, "runbook": runbook}, now)
            return run.id

    def finish_run(self, run_id: int, status: str, cell_index: int | None = None, ename: str = "",
                   evalue: str = "") -> RunbookRun:
        """Record how a run ended ("succeeded" or "failed"); sets the incident's runbook_status."""
        if status not in ("succeeded", "failed"):
            raise BadInput(f"runbook run status {status!r} is not valid; use succeeded or failed")
        now = _now()
        ename = ename or ""
        evalue = evalue or ""
        with self._session(write=True) as s:
            run = s.scalars(select(RunbookRunRow).where(RunbookRunRow.id == run_id).with_for_update()).first()
            if run is None:
                raise NotFound(f"no runbook run {run_id}; start one with Store.start_run first")
            if run.status != "running":
                raise BadInput(f"runbook run {run_id} already finished ({run.status}); start a new run")
            run.status = status
            run.finished = now
            run.cell_index = cell_index
            run.ename = ename
            from incidentbook.redact import process_redactor

            evalue = process_redactor().redact(evalue)
            run.evalue = evalue
            inc = self._get_row(s, run.incident_id, lock=True)
            inc.runbook_status = status
            inc.updated = now
            took = (now - run.started).total_seconds()
            data: dict[str, Any] = {"run_id": run.id, "runbook": run.runbook, "duration_s": round(took, 3)}
            if status == "failed":
                inc.runbook_error = {"cell_index": cell_index, "ename": ename, "evalue": evalue}
                where = f"cell {cell_index}" if cell_index is not None else "the runbook"
                err = f": {ename}: {evalue}" if ename or evalue else ""
                self._add_event(s, inc.id, "runbook_failed", f"Runbook {run.runbook} failed in {where}{err}",
                                "incidentbook", {**data, **inc.runbook_error}, now)
            else:
                inc.runbook_error = None
                self._add_event(s, inc.id, "runbook_finished",
                                f"Runbook {run.runbook} finished in {took:.1f} s", "incidentbook", data, now)
            s.flush()
            return _run(run)
