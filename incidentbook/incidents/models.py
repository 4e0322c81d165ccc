"""The database schema (SQLAlchemy 2 ORM). Changes here need an Alembic revision in migrations/."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


#: Alembic's version table; named so the store can share a PostgreSQL database with other apps.
VERSION_TABLE = "incidentbook_alembic_version"

JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class IdCounter(Base):
    """Per-day counter behind `INC-YYYYMMDD-NNNN` ids (bumped atomically with an upsert)."""

    __tablename__ = "id_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, nullable=False)


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_key: Mapped[str] = mapped_column(Text, nullable=False)
    # sha256 of group_key: group keys can be long, and the index below must stay small.
    group_key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    severity: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    alertname: Mapped[str] = mapped_column(Text, nullable=False)
    service: Mapped[str] = mapped_column(Text, nullable=False, default="")
    namespace: Mapped[str] = mapped_column(Text, nullable=False, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    annotations: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    external_url: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created: Mapped[datetime] = mapped_column(nullable=False)
    updated: Mapped[datetime] = mapped_column(nullable=False)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    root_cause: Mapped[str | None] = mapped_column(Text)
    runbook: Mapped[str | None] = mapped_column(Text)
    runbook_status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    runbook_error: Mapped[dict[str, Any] | None]
    notebook: Mapped[str | None] = mapped_column(Text)
    bundle: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The dedupe rule, enforced by the database so concurrent ingests cannot break it:
        # at most one OPEN incident per alert group.
        Index(
            "uq_incidents_open_group", "group_key_hash", unique=True,
            sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'"),
        ),
        Index("ix_incidents_group_key_hash", "group_key_hash"),
        Index("ix_incidents_status_created", "status", "created"),
    )


class PayloadRow(Base):
    """Every webhook body exactly as received, written before anything else happens."""

    __tablename__ = "payloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    group_key: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    raw: Mapped[str] = mapped_column(Text, nullable=False)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    labels: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    annotations: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    starts_at: Mapped[datetime] = mapped_column(nullable=False)
    ends_at: Mapped[datetime | None]
    generator_url: Mapped[str] = mapped_column(Text, nullable=False, default="")
    first_seen: Mapped[datetime] = mapped_column(nullable=False)
    last_seen: Mapped[datetime] = mapped_column(nullable=False)
    resolved_at: Mapped[datetime | None]
    notifications: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_payload_id: Mapped[int | None] = mapped_column(ForeignKey("payloads.id"))

    __table_args__ = (UniqueConstraint("incident_id", "fingerprint", name="uq_alerts_incident_fingerprint"),)


class TimelineEventRow(Base):
    __tablename__ = "timeline_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), nullable=False)
    timestamp: Mapped[datetime] = mapped_column(nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(nullable=False)

    __table_args__ = (Index("ix_timeline_incident_ts", "incident_id", "timestamp", "id"),)


class RunbookRunRow(Base):
    __tablename__ = "runbook_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), nullable=False, index=True)
    runbook: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    started: Mapped[datetime] = mapped_column(nullable=False)
    finished: Mapped[datetime | None]
    cell_index: Mapped[int | None] = mapped_column(Integer)
    ename: Mapped[str] = mapped_column(Text, nullable=False, default="")
    evalue: Mapped[str] = mapped_column(Text, nullable=False, default="")


class WorkItemRow(Base):
    """The durable work queue of `incidentbook serve`.

    `kind="alert"`: a webhook body, stored before the HTTP 2xx, folded into an incident by an
    intake worker. `kind="runbook"`: an incident's runbook execution, at most one per incident.
    Workers claim rows with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL; a running job
    whose `lease_until` passed (its worker died) is claimed again.
    """

    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    # sha256 of the body (alert items) or of "runbook:<incident id>": the same body twice is one item.
    dedupe_key: Mapped[str] = mapped_column(String(64), nullable=False)
    raw: Mapped[str] = mapped_column(Text, nullable=False, default="")
    incident_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(nullable=False)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str] = mapped_column(Text, nullable=False, default="")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_work_items_dedupe_key"),
        Index("ix_work_items_kind_state_id", "kind", "state", "id"),
    )


class AuditCheckpointRow(Base):
    """The keyed head of an action audit log (`seq`, `head` hash, `mac`), kept apart from the log
    so a deleted tail or a truncated file is caught (incidentbook.actions.audit.StoreAnchor)."""

    __tablename__ = "audit_checkpoints"

    log: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    head: Mapped[str] = mapped_column(String(64), nullable=False)
    mac: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(nullable=False)
