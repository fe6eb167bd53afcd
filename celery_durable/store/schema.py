"""The store's tables (SQLAlchemy Core): instances, history, inbox, timers, outbox, wakeups,
redispatches, purged, schedules, concurrency.

Datetimes are stored as naive UTC (read back as aware UTC by `records`); JSON is stored as text.
The Alembic migrations in ``migrations/versions`` create exactly these tables; a test compares
them with this metadata.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

#: The Alembic revision the code expects; ``create_schema`` upgrades to it.
SCHEMA_REVISION = "0008"
#: Alembic's version table, named apart from any version table of the user's own migrations.
VERSION_TABLE = "durable_alembic_version"

#: MySQL/MariaDB: 4-byte UTF-8 and binary (case-sensitive) comparison of ids, as elsewhere.
MYSQL_TABLE_ARGS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def utc_datetime() -> TypeEngine[Any]:
    """A naive-UTC datetime column type that keeps microseconds on MySQL/MariaDB."""
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def json_text() -> TypeEngine[Any]:
    """A JSON text column type without MySQL's 64 KB TEXT limit."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def row_id() -> TypeEngine[Any]:
    """An autoincrement id: BIGINT, but INTEGER on SQLite (where only that autoincrements)."""
    return BigInteger().with_variant(Integer(), "sqlite")


metadata = MetaData()

instances = Table(
    "durable_instances",
    metadata,
    Column("instance_id", String(256), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("version", String(64), nullable=True),
    Column("status", String(20), nullable=False),
    Column("input", json_text(), nullable=True),
    Column("output", json_text(), nullable=True),
    Column("failure", json_text(), nullable=True),
    Column("custom_status", json_text(), nullable=True),
    Column("parent_instance_id", String(256), nullable=True),
    Column("parent_task_id", Integer, nullable=True),
    Column("parent_execution_id", String(32), nullable=True),
    Column("execution_id", String(32), nullable=False),
    Column("generation", Integer, nullable=False, default=0, server_default=text("0")),
    Column("history_len", Integer, nullable=False, default=0, server_default=text("0")),
    Column("tags", json_text(), nullable=True),
    Column("created_at", utc_datetime(), nullable=False),
    Column("updated_at", utc_datetime(), nullable=False),
    Column("completed_at", utc_datetime(), nullable=True),
    Column("start_at", utc_datetime(), nullable=True),
    Index("ix_durable_instances_parent", "parent_instance_id"),
    Index("ix_durable_instances_status_created", "status", "created_at"),
    Index("ix_durable_instances_name_created", "name", "created_at"),
    # listing every instance by creation (durable list, the dashboard), retention by end time:
    # migration 0004; counts by orchestrator and status (metrics) and the RUNNING and waiting
    # instances of a name (concurrency limits, store/limits.py): migration 0006
    Index("ix_durable_instances_created", "created_at", "instance_id"),
    Index("ix_durable_instances_completed", "completed_at"),
    Index("ix_durable_instances_name_status_created", "name", "status", "created_at"),
    **MYSQL_TABLE_ARGS,
)

history = Table(
    "durable_history",
    metadata,
    Column("instance_id", String(256), nullable=False),
    Column("execution_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False, autoincrement=False),
    Column("kind", String(40), nullable=False),
    Column("timestamp", utc_datetime(), nullable=False),
    Column("task_id", Integer, nullable=True),
    Column("name", String(256), nullable=True),
    Column("data", json_text(), nullable=False),
    PrimaryKeyConstraint("instance_id", "execution_id", "seq", name="pk_durable_history"),
    # a task's events (its completion, for the overdue-task query: store/overdue.py)
    Index("ix_durable_history_task", "instance_id", "execution_id", "task_id"),
    **MYSQL_TABLE_ARGS,
)

inbox = Table(
    "durable_inbox",
    metadata,
    Column("id", row_id(), primary_key=True, autoincrement=True),
    Column("instance_id", String(256), nullable=False),
    Column("execution_id", String(32), nullable=True),
    Column("dedup_key", String(300), nullable=False),
    Column("event", json_text(), nullable=False),
    Column("created_at", utc_datetime(), nullable=False),
    # The unique index also serves "rows of this instance" (its leading column).
    UniqueConstraint("instance_id", "dedup_key", name="uq_durable_inbox_dedup"),
    **MYSQL_TABLE_ARGS,
)

timers = Table(
    "durable_timers",
    metadata,
    Column("instance_id", String(256), nullable=False),
    Column("execution_id", String(32), nullable=False),
    Column("task_id", Integer, nullable=False, autoincrement=False),
    Column("fire_at", utc_datetime(), nullable=False),
    Column("dispatched_at", utc_datetime(), nullable=True),
    PrimaryKeyConstraint("instance_id", "execution_id", "task_id", name="pk_durable_timers"),
    Index("ix_durable_timers_fire_at", "fire_at"),
    **MYSQL_TABLE_ARGS,
)

outbox = Table(
    "durable_outbox",
    metadata,
    Column("id", row_id(), primary_key=True, autoincrement=True),
    Column("instance_id", String(256), nullable=False),
    Column("message", json_text(), nullable=False),
    Column("created_at", utc_datetime(), nullable=False),
    Index("ix_durable_outbox_created", "created_at"),
    **MYSQL_TABLE_ARGS,
)

# An instance whose wake-up message was sent and whose woken episode has not started yet: whoever
# delivers to its inbox meanwhile need not send another (coalesced wake-ups).
wakeups = Table(
    "durable_wakeups",
    metadata,
    Column("instance_id", String(256), primary_key=True),
    Column("created_at", utc_datetime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

# Activities and timers the sweeper found overdue (see store/overdue.py): when one may be checked
# again (a claim, like a timer's dispatched_at) and how often it was re-dispatched.
redispatches = Table(
    "durable_redispatches",
    metadata,
    Column("instance_id", String(256), nullable=False),
    Column("execution_id", String(32), nullable=False),
    Column("task_id", Integer, nullable=False, autoincrement=False),
    Column("next_check_at", utc_datetime(), nullable=False),
    Column("redispatched", Integer, nullable=False, default=0, server_default=text("0")),
    PrimaryKeyConstraint("instance_id", "execution_id", "task_id", name="pk_durable_redispatches"),
    **MYSQL_TABLE_ARGS,
)

# How many instances of each orchestrator and end status were purged (store/retention.py): the
# metrics' counters add them to the instances still stored, so that a purge lowers none of them.
purged = Table(
    "durable_purged",
    metadata,
    Column("name", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("instances", BigInteger, nullable=False, default=0, server_default=text("0")),
    PrimaryKeyConstraint("name", "status", name="pk_durable_purged"),
    **MYSQL_TABLE_ARGS,
)

# Recurring orchestrations (store/schedules.py): the definition, the next tick due, what ran.
schedules = Table(
    "durable_schedules",
    metadata,
    Column("schedule_id", String(200), primary_key=True),
    Column("orchestrator", String(256), nullable=False),
    Column("input", json_text(), nullable=True),
    Column("interval_ms", BigInteger, nullable=True),
    Column("cron", String(200), nullable=True),
    Column("start_at", utc_datetime(), nullable=True),
    Column("end_at", utc_datetime(), nullable=True),
    Column("overlap", String(16), nullable=False),
    Column("catchup_ms", BigInteger, nullable=True),
    Column("paused", Integer, nullable=False, default=0, server_default=text("0")),
    Column("next_run_at", utc_datetime(), nullable=True),
    Column("last_run_at", utc_datetime(), nullable=True),
    Column("last_instance_id", String(256), nullable=True),
    Column("buffered_at", utc_datetime(), nullable=True),
    Column("runs", Integer, nullable=False, default=0, server_default=text("0")),
    Column("missed", Integer, nullable=False, default=0, server_default=text("0")),
    Column("overlapped", Integer, nullable=False, default=0, server_default=text("0")),
    Column("created_at", utc_datetime(), nullable=False),
    Column("updated_at", utc_datetime(), nullable=False),
    Index("ix_durable_schedules_next_run", "next_run_at"),
    **MYSQL_TABLE_ARGS,
)

# One row per orchestrator with a concurrency limit: the lock its admissions take (store/limits.py).
concurrency_slots = Table(
    "durable_concurrency",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("created_at", utc_datetime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

# Durable entities (store/entities.py): an entity's id is "@name@key" (an id space of its own,
# apart from instances); its inbox rows are in the inbox table. ``state`` is JSON (NULL: none);
# the lock is held by orchestration ``locked_by`` for its critical section
# (lock_execution, lock_task_id).
entities = Table(
    "durable_entities",
    metadata,
    Column("instance_id", String(256), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("state", json_text(), nullable=True),
    Column("locked_by", String(256), nullable=True),
    Column("lock_execution", String(32), nullable=True),
    Column("lock_task_id", Integer, nullable=True),
    Column("created_at", utc_datetime(), nullable=False),
    Column("updated_at", utc_datetime(), nullable=False),
    Index("ix_durable_entities_locked_by", "locked_by"),
    **MYSQL_TABLE_ARGS,
)

# The last heartbeat of an activity (``ctx.heartbeat``, store/heartbeats.py): its details and
# when it came; the sweeper re-dispatches an activity whose heartbeats stopped.
heartbeats = Table(
    "durable_heartbeats",
    metadata,
    Column("instance_id", String(256), nullable=False),
    Column("execution_id", String(32), nullable=False),
    Column("task_id", Integer, nullable=False, autoincrement=False),
    Column("details", json_text(), nullable=True),
    Column("beat_at", utc_datetime(), nullable=False),
    PrimaryKeyConstraint("instance_id", "execution_id", "task_id", name="pk_durable_heartbeats"),
    Index("ix_durable_heartbeats_beat_at", "beat_at"),
    **MYSQL_TABLE_ARGS,
)

#: Tables holding rows of an instance, keyed by ``instance_id`` (purge deletes from each).
INSTANCE_TABLES = (history, inbox, timers, outbox, wakeups, redispatches, heartbeats, instances)
