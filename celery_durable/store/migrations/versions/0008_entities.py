"""Durable entities: each entity's state and lock (its inbox rows are in durable_inbox).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _utc() -> Any:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "durable_entities",
        sa.Column("instance_id", sa.String(256), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("state", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
                  nullable=True),
        sa.Column("locked_by", sa.String(256), nullable=True),
        sa.Column("lock_execution", sa.String(32), nullable=True),
        sa.Column("lock_task_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_durable_entities_locked_by", "durable_entities", ["locked_by"])


def downgrade() -> None:
    op.drop_index("ix_durable_entities_locked_by", table_name="durable_entities")
    op.drop_table("durable_entities")
