"""Concurrency limits (``durable_concurrency``): at most N instances of an orchestrator RUNNING.

An instance of a limited orchestrator that has not started (PENDING, no history yet) is
*waiting*; waiting instances start in the order they were created (``created_at``, then id).
An episode about to start such an instance is *admitted* only if it is the oldest waiting
instance and fewer than N instances of the name hold a slot (`HOLDING`); otherwise it
commits nothing and its start stays in the inbox. Nobody polls: whoever frees or leaves a slot
wakes the next waiting instance through the outbox of its own commit (see
`celery_durable.runtime.limits`), and the sweeper wakes the head of a queue whose wake-up was
lost.

"At most N" holds because admissions of one name are serialised and each one counts the slots
after the previous one committed:

- PostgreSQL and MySQL/MariaDB: the admitting transaction locks the name's row in
  ``durable_concurrency`` (``SELECT ... FOR UPDATE``) before it counts, and keeps the lock until
  it commits the instance RUNNING. The store runs both at READ COMMITTED (store/engine.py),
  where each statement reads what was committed when it began: the count, a statement after
  the lock was granted, sees every admission committed before (a plain read: a locking read of
  the instances would only add lock waits and, on InnoDB, next-key deadlocks with the episodes
  that end them).
- SQLite: every write transaction (``BEGIN IMMEDIATE``) holds the database's write lock from its
  start, so an admission sees all earlier ones and none runs alongside it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from celery_durable.engine.status import OrchestrationStatus
from celery_durable.store.records import now, to_db_time
from celery_durable.store.schema import concurrency_slots, instances
from celery_durable.store.writes import insert_ignore

#: the statuses that hold a slot of their orchestrator's limit (an instance that continues as
#: new keeps its slot between its executions)
HOLDING = (OrchestrationStatus.RUNNING.value, OrchestrationStatus.SUSPENDED.value,
           OrchestrationStatus.CONTINUED_AS_NEW.value)


def lock_name(conn: Connection, dialect: str, name: str) -> None:
    """Take the lock that serialises the admissions of ``name`` (until the transaction ends)."""
    if dialect == "sqlite":  # the write transaction is the lock
        return
    lock = select(concurrency_slots.c.name).where(concurrency_slots.c.name == name) \
        .with_for_update()
    if conn.execute(lock).first() is None:
        # the name's first admission creates its row (not every time: on InnoDB, INSERT IGNORE
        # of an existing key takes a shared lock, and two of those wanting the exclusive one
        # deadlock)
        conn.execute(insert_ignore(dialect, concurrency_slots.name),
                     [{"name": name, "created_at": to_db_time(now())}])
        conn.execute(lock)


def holding(conn: Connection, name: str) -> int:
    """How many instances of ``name`` hold a slot (RUNNING or SUSPENDED), as last committed."""
    query = select(func.count()).select_from(instances).where(
        instances.c.name == name, instances.c.status.in_(HOLDING))
    return int(conn.execute(query).scalar_one())


def waiting(conn: Connection, name: str, at: datetime, limit: int,
            older_than: datetime | None = None) -> list[str]:
    """The ids of the first ``limit`` waiting instances of ``name`` (not started, due to start by
    ``at``), oldest first; with ``older_than``, only those created before it."""
    query = select(instances.c.instance_id).where(
        instances.c.name == name,
        instances.c.status == OrchestrationStatus.PENDING.value,
        instances.c.history_len == 0,
        or_(instances.c.start_at.is_(None), instances.c.start_at <= to_db_time(at)))
    if older_than is not None:
        query = query.where(instances.c.created_at < to_db_time(older_than))
    query = query.order_by(instances.c.created_at, instances.c.instance_id).limit(limit)
    return list(conn.execute(query).scalars())


def admit(conn: Connection, dialect: str, name: str, instance_id: str, limit: int,
          at: datetime) -> tuple[bool, list[str]]:
    """Whether ``instance_id`` (waiting) may start now, and the waiting instances to wake
    after this transaction commits: the next one when a slot is still free after it."""
    lock_name(conn, dialect, name)
    held = holding(conn, name)
    if held >= limit:
        return False, []
    queue = waiting(conn, name, at, 2)
    if not queue or queue[0] != instance_id:  # an older instance goes first
        return False, []
    return True, queue[1:2] if held + 1 < limit else []
