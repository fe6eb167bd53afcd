"""Durable schedules (recurring orchestrations fired by the workers' sweepers) and concurrency
limits (one lock row per limited orchestrator; the index of instances by name, status and
creation time that they read comes with migration 0004).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _time() -> Any:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _json() -> Any:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "durable_schedules",
        sa.Column("schedule_id", sa.String(200), primary_key=True),
        sa.Column("orchestrator", sa.String(256), nullable=False),
        sa.Column("input", _json(), nullable=True),
        sa.Column("interval_ms", sa.BigInteger(), nullable=True),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("start_at", _time(), nullable=True),
        sa.Column("end_at", _time(), nullable=True),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catchup_ms", sa.BigInteger(), nullable=True),
        sa.Column("paused", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_run_at", _time(), nullable=True),
        sa.Column("last_run_at", _time(), nullable=True),
        sa.Column("last_instance_id", sa.String(256), nullable=True),
        sa.Column("buffered_at", _time(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("missed", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("overlapped", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_durable_schedules_next_run", "durable_schedules", ["next_run_at"])
    op.create_table(
        "durable_concurrency",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("created_at", _time(), nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("durable_concurrency")
    op.drop_index("ix_durable_schedules_next_run", table_name="durable_schedules")
    op.drop_table("durable_schedules")
