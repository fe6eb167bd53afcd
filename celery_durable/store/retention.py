"""Retention: deleting ended instances in small batches by index, and keeping count of them.

Every purge, of one instance (`Store.purge`) or of many (`purge_batch`: the client's
``purge_orchestrations_by``, ``durable purge --status``, the sweeper's ``durable_retention``),
deletes through `delete_ended`, which adds the deleted instances to ``durable_purged`` (instances
per orchestrator and end status). The metrics' started / completed / failed / terminated counters
are the instances stored plus those purged, so that no purge lowers a counter.

A batch is one short transaction: it picks at most ``limit`` ended instances through an index
(``ix_durable_instances_status_created`` for a creation-time filter,
``ix_durable_instances_completed`` for an end-time one), locks them with SKIP LOCKED on
PostgreSQL and MySQL (several purgers split the work; nothing waits), and deletes their rows from
every table by primary key or index. Instances that have not ended are never selected, so no lock
the hot path needs (a running instance's row, its inbox, its timers) is ever taken.

`settled_redispatches` finds the ``durable_redispatches`` rows whose task has completed or whose
instance's execution is over (the sweeper deletes them): such a row lives as long as the activity
it watches, not as long as the instance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, func, or_, select, tuple_
from sqlalchemy.dialects import mysql, postgresql, sqlite

from celery_durable.engine import history as h
from celery_durable.engine.status import TERMINAL_STATUSES, OrchestrationStatus
from celery_durable.store.records import to_db_time
from celery_durable.store.schema import (
    INSTANCE_TABLES,
    history,
    instances,
    purged,
    redispatches,
)
from celery_durable.store.writes import chunks, delete_instance_rows

TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)
_LIVE = [OrchestrationStatus.RUNNING.value, OrchestrationStatus.SUSPENDED.value]
_DONE = [h.TASK_COMPLETED, h.TASK_FAILED, h.TIMER_FIRED]
#: instances one retention or purge-by-filter transaction deletes at most
BATCH = 500


def ended_statuses(statuses: Sequence[str] | None) -> list[str]:
    """The end statuses among ``statuses`` (all of them for None); ``ValueError`` for a status
    that is not an end status (a running instance cannot be purged)."""
    if statuses is None:
        return TERMINAL
    values = [OrchestrationStatus(s).value for s in statuses]
    live = [v for v in values if v not in TERMINAL]
    if live:
        raise ValueError(f"only ended instances can be purged ({', '.join(TERMINAL)}), got "
                         f"{', '.join(live)}; terminate such instances first")
    return sorted(set(values))


def _locked(query: Any, dialect: str) -> Any:
    if dialect == "sqlite":  # the BEGIN IMMEDIATE transaction is the lock
        return query
    return query.with_for_update(skip_locked=True)


def ended_batch(conn: Connection, dialect: str, *, statuses: Sequence[str],
                created_from: datetime | None = None, created_to: datetime | None = None,
                ended_before: datetime | None = None, limit: int = BATCH) -> list[str]:
    """Ids of at most ``limit`` ended instances (of ``statuses``, end statuses only) created
    in [created_from, created_to] and ended before ``ended_before``, locked for deletion
    (skipping rows another transaction holds)."""
    query = select(instances.c.instance_id).where(instances.c.status.in_(list(statuses)))
    if created_from is not None:
        query = query.where(instances.c.created_at >= to_db_time(created_from))
    if created_to is not None:
        query = query.where(instances.c.created_at <= to_db_time(created_to))
    if ended_before is not None:
        query = query.where(instances.c.completed_at < to_db_time(ended_before))
    return list(conn.execute(_locked(query.limit(limit), dialect)).scalars())


def ended_descendants(conn: Connection, dialect: str, ids: Sequence[str]) -> list[str]:
    """The ended sub-orchestrations of ``ids``, their ended ones, and so on (locked; a running
    descendant is kept, with its subtree)."""
    found: list[str] = []
    seen, frontier = set(ids), list(ids)
    while frontier:
        children: list[str] = []
        for part in chunks(frontier):
            query = select(instances.c.instance_id, instances.c.status).where(
                instances.c.parent_instance_id.in_(part))
            for child, status in conn.execute(_locked(query, dialect)):
                if status in TERMINAL and child not in seen:
                    seen.add(child)
                    children.append(child)
        found.extend(children)
        frontier = children
    return found


def delete_ended(conn: Connection, dialect: str, ids: Sequence[str]) -> int:
    """Delete the instances ``ids`` (ended, locked by the caller's transaction) with every row
    they have, and add them to the purged counts; returns how many were deleted."""
    ids = list(dict.fromkeys(ids))
    deleted = count_as_purged(conn, dialect, ids)
    delete_instance_rows(conn, ids, INSTANCE_TABLES)
    return deleted


def count_as_purged(conn: Connection, dialect: str, ids: Sequence[str]) -> int:
    """Add the instances ``ids`` (ended, about to be deleted or replaced by a new instance of
    the same id) to the purged counts; returns how many of them exist."""
    counts: Counter[tuple[str, str]] = Counter()
    for part in chunks(list(ids)):
        query = (select(instances.c.name, instances.c.status, func.count())
                 .where(instances.c.instance_id.in_(part))
                 .group_by(instances.c.name, instances.c.status))
        for name, status, n in conn.execute(query):
            counts[(name, status)] += int(n)
    _add_purged(conn, dialect, counts)
    return sum(counts.values())


def _add_purged(conn: Connection, dialect: str, counts: Counter[tuple[str, str]]) -> None:
    """Add ``counts`` to ``durable_purged`` (an upsert per orchestrator and status)."""
    for (name, status), n in sorted(counts.items()):  # one order: no deadlock between purgers
        row = {"name": name, "status": status, "instances": n}
        if dialect == "mysql":
            stmt: Any = mysql.insert(purged).values(row)
            stmt = stmt.on_duplicate_key_update(instances=purged.c.instances + n)
        else:
            stmt = (postgresql.insert(purged) if dialect == "postgresql"
                    else sqlite.insert(purged)).values(row)
            stmt = stmt.on_conflict_do_update(index_elements=["name", "status"],
                                              set_={"instances": purged.c.instances + n})
        conn.execute(stmt)


def purged_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Instances purged so far, per (orchestrator, end status)."""
    return {(name, status): int(n) for name, status, n
            in conn.execute(select(purged.c.name, purged.c.status, purged.c.instances))}


def settled_redispatches(conn: Connection, limit: int = BATCH) -> list[tuple[str, str, int]]:
    """Keys of ``durable_redispatches`` rows that have served: their task's completion is in
    history, or their instance has ended, moved to another execution or gone."""
    r = redispatches
    completed = exists().where(history.c.instance_id == r.c.instance_id,
                               history.c.execution_id == r.c.execution_id,
                               history.c.task_id == r.c.task_id, history.c.kind.in_(_DONE))
    live = exists().where(instances.c.instance_id == r.c.instance_id,
                          instances.c.execution_id == r.c.execution_id,
                          instances.c.status.in_(_LIVE))
    query = (select(r.c.instance_id, r.c.execution_id, r.c.task_id)
             .where(or_(completed, ~live)).limit(limit))
    return [(i, e, int(t)) for i, e, t in conn.execute(query)]


def delete_redispatches(conn: Connection, keys: Sequence[tuple[str, str, int]]) -> None:
    """Delete these ``durable_redispatches`` rows."""
    key = tuple_(redispatches.c.instance_id, redispatches.c.execution_id, redispatches.c.task_id)
    for part in chunks(list(keys)):
        conn.execute(redispatches.delete().where(key.in_(part)))

