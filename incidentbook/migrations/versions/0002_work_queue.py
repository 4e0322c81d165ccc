"""The durable work queue of `incidentbook serve` (webhook bodies and runbook jobs).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=True),
        _ts("received_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("lease_until"),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("dedupe_key", name="uq_work_items_dedupe_key"),
    )
    op.create_index("ix_work_items_kind_state_id", "work_items", ["kind", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_work_items_kind_state_id", table_name="work_items")
    op.drop_table("work_items")
