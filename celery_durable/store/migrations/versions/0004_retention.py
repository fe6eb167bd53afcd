"""Retention and metrics at scale: indexes for listing all instances newest or oldest first, for
finding ended instances by end time (retention), for counting instances by orchestrator and
status (metrics, the dashboard's counts), and the table of purged instances' counts (so that the
metrics' started / completed / failed / terminated counters do not go down when instances are
purged).

On a large PostgreSQL store, the index builds take the table's write lock for their duration
(about a second per million instances); docs/operations.md says how to build them beforehand
with CREATE INDEX CONCURRENTLY.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
INDEXES = {
    "ix_durable_instances_created": ["created_at", "instance_id"],
    "ix_durable_instances_completed": ["completed_at"],
    # (name, status) counts for the metrics, and the waiting instances of a name in creation
    # order for concurrency limits (migration 0006)
    "ix_durable_instances_name_status_created": ["name", "status", "created_at"],
}


def _exists(name: str) -> bool:
    """Whether an index of this name is on the instances table already (built beforehand)."""
    inspector = sa.inspect(op.get_bind())
    return any(ix["name"] == name for ix in inspector.get_indexes("durable_instances"))


def upgrade() -> None:
    for name, columns in INDEXES.items():
        if not _exists(name):
            op.create_index(name, "durable_instances", columns)
    op.create_table(
        "durable_purged",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("instances", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("name", "status", name="pk_durable_purged"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("durable_purged")
    for name in INDEXES:
        op.drop_index(name, table_name="durable_instances")
