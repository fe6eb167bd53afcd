"""The initial store schema: instances, history, inbox, timers, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _time() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _row_id() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "durable_instances",
        sa.Column("instance_id", sa.String(256), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("input", _json(), nullable=True),
        sa.Column("output", _json(), nullable=True),
        sa.Column("failure", _json(), nullable=True),
        sa.Column("custom_status", _json(), nullable=True),
        sa.Column("parent_instance_id", sa.String(256), nullable=True),
        sa.Column("parent_task_id", sa.Integer, nullable=True),
        sa.Column("parent_execution_id", sa.String(32), nullable=True),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("history_len", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("tags", _json(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("completed_at", _time(), nullable=True),
        sa.Column("start_at", _time(), nullable=True),
        **MYSQL,
    )
    op.create_index("ix_durable_instances_parent", "durable_instances", ["parent_instance_id"])
    op.create_index("ix_durable_instances_status_created", "durable_instances",
                    ["status", "created_at"])
    op.create_index("ix_durable_instances_name_created", "durable_instances",
                    ["name", "created_at"])

    op.create_table(
        "durable_history",
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("timestamp", _time(), nullable=False),
        sa.Column("task_id", sa.Integer, nullable=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("data", _json(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "execution_id", "seq", name="pk_durable_history"),
        **MYSQL,
    )

    op.create_table(
        "durable_inbox",
        sa.Column("id", _row_id(), primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=True),
        sa.Column("dedup_key", sa.String(300), nullable=False),
        sa.Column("event", _json(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.UniqueConstraint("instance_id", "dedup_key", name="uq_durable_inbox_dedup"),
        **MYSQL,
    )

    op.create_table(
        "durable_timers",
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("task_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("fire_at", _time(), nullable=False),
        sa.Column("dispatched_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("instance_id", "execution_id", "task_id",
                                name="pk_durable_timers"),
        **MYSQL,
    )
    op.create_index("ix_durable_timers_fire_at", "durable_timers", ["fire_at"])

    op.create_table(
        "durable_outbox",
        sa.Column("id", _row_id(), primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(256), nullable=False),
        sa.Column("message", _json(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_durable_outbox_created", "durable_outbox", ["created_at"])


def downgrade() -> None:
    for table in ("durable_outbox", "durable_timers", "durable_inbox", "durable_history",
                  "durable_instances"):
        op.drop_table(table)
