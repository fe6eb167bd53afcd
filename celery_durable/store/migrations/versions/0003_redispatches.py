"""Overdue activities and timers: when the sweeper may check one again, and how often it was
re-dispatched; an index of history by task id (where the overdue-task query finds completions).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "durable_redispatches",
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("next_check_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql",
                                                              "mariadb"), nullable=False),
        sa.Column("redispatched", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("instance_id", "execution_id", "task_id",
                                name="pk_durable_redispatches"),
        **MYSQL,
    )
    op.create_index("ix_durable_history_task", "durable_history",
                    ["instance_id", "execution_id", "task_id"])


def downgrade() -> None:
    op.drop_index("ix_durable_history_task", table_name="durable_history")
    op.drop_table("durable_redispatches")
