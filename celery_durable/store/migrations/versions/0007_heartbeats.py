"""Activity heartbeats: the last progress an activity reported (``ctx.heartbeat``), per task.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "durable_heartbeats",
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("details", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
                  nullable=True),
        sa.Column("beat_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql",
                                                        "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "execution_id", "task_id",
                                name="pk_durable_heartbeats"),
        **MYSQL,
    )
    op.create_index("ix_durable_heartbeats_beat_at", "durable_heartbeats", ["beat_at"])


def downgrade() -> None:
    op.drop_index("ix_durable_heartbeats_beat_at", table_name="durable_heartbeats")
    op.drop_table("durable_heartbeats")
