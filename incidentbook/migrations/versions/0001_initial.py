"""Initial schema: incidents, alerts, timeline events, runbook runs, payloads, id counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "id_counters",
        sa.Column("day", sa.String(8), primary_key=True),
        sa.Column("last", sa.Integer(), nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("group_key_hash", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(64), nullable=False),
        sa.Column("alertname", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("annotations", JSONType, nullable=False),
        sa.Column("external_url", sa.Text(), nullable=False),
        _ts("created"),
        _ts("updated"),
        _ts("closed_at", nullable=True),
        sa.Column("closed_by", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("runbook", sa.Text(), nullable=True),
        sa.Column("runbook_status", sa.String(16), nullable=False),
        sa.Column("runbook_error", JSONType, nullable=True),
        sa.Column("notebook", sa.Text(), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=True),
    )
    op.create_index(
        "uq_incidents_open_group", "incidents", ["group_key_hash"], unique=True,
        sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_incidents_group_key_hash", "incidents", ["group_key_hash"])
    op.create_index("ix_incidents_status_created", "incidents", ["status", "created"])
    op.create_table(
        "payloads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("received_at"),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=True),
        _ts("processed_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_payloads_incident_id", "payloads", ["incident_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("annotations", JSONType, nullable=False),
        _ts("starts_at"),
        _ts("ends_at", nullable=True),
        sa.Column("generator_url", sa.Text(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("resolved_at", nullable=True),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("last_payload_id", sa.Integer(), sa.ForeignKey("payloads.id"), nullable=True),
        sa.UniqueConstraint("incident_id", "fingerprint", name="uq_alerts_incident_fingerprint"),
    )
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        _ts("timestamp"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("data", JSONType, nullable=False),
    )
    op.create_index("ix_timeline_incident_ts", "timeline_events", ["incident_id", "timestamp", "id"])
    op.create_table(
        "runbook_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(32), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("runbook", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started"),
        _ts("finished", nullable=True),
        sa.Column("cell_index", sa.Integer(), nullable=True),
        sa.Column("ename", sa.Text(), nullable=False),
        sa.Column("evalue", sa.Text(), nullable=False),
    )
    op.create_index("ix_runbook_runs_incident_id", "runbook_runs", ["incident_id"])


def downgrade() -> None:
    op.drop_table("runbook_runs")
    op.drop_table("timeline_events")
    op.drop_table("alerts")
    op.drop_table("payloads")
    op.drop_table("incidents")
    op.drop_table("id_counters")
