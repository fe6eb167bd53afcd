"""Writes shared by the store's transactions: idempotent inbox inserts, creating instances
(replacing finished ones), deleting an instance's rows. Each runs inside the caller's
transaction on the given connection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, delete, false, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.status import TERMINAL_STATUSES, OrchestrationStatus
from celery_durable.store.records import (
    START_TIMER_ID,
    Delivery,
    InboxItem,
    NewInstance,
    to_db_time,
)
from celery_durable.store.schema import (
    history,
    inbox,
    instances,
    metadata,
    redispatches,
    timers,
    wakeups,
)

T = TypeVar("T")

#: Most ids bound into one ``IN (...)`` list.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


@cache
def insert_ignore(dialect: str, table_name: str, returning: str | None = None) -> Insert:
    """An INSERT into ``table_name`` that skips rows violating a unique constraint, in
    ``dialect``'s words, returning column ``returning`` of the new rows (not on MySQL)."""
    table = metadata.tables[table_name]
    if dialect == "postgresql":
        stmt: Insert = pg_insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing()
    else:
        stmt = insert(table).prefix_with("IGNORE")
    return stmt if returning is None else stmt.returning(table.c[returning])


def insert_inbox(conn: Connection, dialect: str, rows: list[dict[str, Any]]) -> int:
    """Insert inbox rows, skipping duplicate (instance_id, dedup_key); return how many were new."""
    if not rows:
        return 0
    if dialect == "mysql":  # a multi-row INSERT IGNORE counts the rows it inserted
        return conn.execute(insert_ignore(dialect, inbox.name), rows).rowcount
    # psycopg's executemany has no total rowcount: count the ids the new rows returned
    return len(conn.execute(insert_ignore(dialect, inbox.name, "id"), rows).all())


def claim_wakeup(conn: Connection, dialect: str, instance_id: str) -> bool:
    """Mark the instance's wake-up as on its way; False if it already was.

    A claim found on its way is locked until the caller's transaction ends, so that a woken
    episode releasing it (before it reads the inbox) waits for what the caller wrote with it:
    without that, an inbox row committed after the episode's read would be left without a
    wake-up. MySQL's INSERT IGNORE locks the row it ran into, SQLite has one writer; PostgreSQL
    needs ON CONFLICT DO UPDATE (whose WHERE false updates nothing but locks the row).
    """
    row = {"instance_id": instance_id, "created_at": to_db_time(datetime.now(timezone.utc))}
    if dialect == "mysql":
        return bool(conn.execute(insert_ignore(dialect, wakeups.name), row).rowcount)
    if dialect == "postgresql":
        return conn.execute(_CLAIM_LOCKING, row).first() is not None
    return conn.execute(insert_ignore(dialect, wakeups.name, "instance_id"), row).first() \
        is not None


_CLAIM_LOCKING = (pg_insert(wakeups)
                  .on_conflict_do_update(index_elements=[wakeups.c.instance_id],
                                         set_={"created_at": wakeups.c.created_at},
                                         where=false())
                  .returning(wakeups.c.instance_id))


def deliver_rows(conn: Connection, dialect: str, instance_id: str, rows: list[dict[str, Any]],
                 claim: bool = True) -> bool | None:
    """Insert inbox rows of an instance (skipping duplicates) and, with ``claim``, claim its
    wake-up: whether the caller must send it (see `claim_wakeup`; False without ``claim``), or
    None when the instance does not exist (nothing is written). One statement on PostgreSQL:
    run in autocommit, a delivery is one round trip."""
    if dialect == "postgresql":
        params: dict[str, Any] = {"iid": instance_id,
                                  "at": to_db_time(datetime.now(timezone.utc)),
                                  **_inbox_params(rows)}
        exists, claimed = conn.exec_driver_sql(_deliver_sql(len(rows), claim), params).one()
        return bool(claimed) if exists else None
    if conn.execute(select(instances.c.instance_id)
                    .where(instances.c.instance_id == instance_id)).first() is None:
        return None
    insert_inbox(conn, dialect, rows)
    return claim and claim_wakeup(conn, dialect, instance_id)


#: the CTE ``claimed`` of a one-statement delivery: the claim of the wake-up of the instance
#: that the CTE ``{source}`` yields, locking a claim already on its way (see `claim_wakeup`)
_CLAIM_SQL = (f"claimed AS (INSERT INTO {wakeups.name} (instance_id, created_at) "
              "SELECT instance_id, %(at)s FROM {source} ON CONFLICT (instance_id) DO UPDATE "
              f"SET created_at = {wakeups.name}.created_at WHERE false RETURNING instance_id)")


@cache
def _deliver_sql(n_rows: int, claim: bool) -> str:
    # data-modifying CTEs: each insert reads the target, so nothing is written for an unknown
    # instance; the claim locks a claim on its way (the statement of claim_wakeup, as text)
    ctes = ["target AS (SELECT instance_id FROM "
            f"{instances.name} WHERE instance_id = %(iid)s)"]
    if n_rows:
        ctes.append(f"new_inbox AS ({_insert_inbox_sql('target', n_rows)})")
    if claim:
        ctes.append(_CLAIM_SQL.format(source="target"))
    claimed = "EXISTS (SELECT 1 FROM claimed)" if claim else "false"
    return f"WITH {', '.join(ctes)} SELECT EXISTS (SELECT 1 FROM target), {claimed}"


def deliver_running_rows(conn: Connection, dialect: str, instance_id: str,
                         rows: list[dict[str, Any]]) -> Delivery | None:
    """`deliver_rows` (with the claim) to an instance that has not ended; nothing is written to
    one that has. None when the instance does not exist. One statement on PostgreSQL: the
    inserts are guarded on the status that the statement reads and returns."""
    if dialect == "postgresql":
        params: dict[str, Any] = {"iid": instance_id,
                                  "at": to_db_time(datetime.now(timezone.utc)),
                                  **_inbox_params(rows)}
        found = conn.exec_driver_sql(_deliver_running_sql(len(rows)), params).first()
        if found is None:
            return None
        name, status, claimed = found
        return Delivery(name, OrchestrationStatus(status), bool(claimed))
    found = conn.execute(select(instances.c.name, instances.c.status)
                         .where(instances.c.instance_id == instance_id)).first()
    if found is None:
        return None
    name, status = found[0], OrchestrationStatus(found[1])
    if status.is_terminal:
        return Delivery(name, status, False)
    insert_inbox(conn, dialect, rows)
    return Delivery(name, status, claim_wakeup(conn, dialect, instance_id))


@cache
def _deliver_running_sql(n_rows: int) -> str:
    ended = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
    ctes = [f"target AS (SELECT instance_id, name, status FROM {instances.name} "
            "WHERE instance_id = %(iid)s)",
            f"running AS (SELECT instance_id FROM target WHERE status NOT IN ({ended}))"]
    if n_rows:
        ctes.append(f"new_inbox AS ({_insert_inbox_sql('running', n_rows)})")
    ctes.append(_CLAIM_SQL.format(source="running"))
    return (f"WITH {', '.join(ctes)} "
            "SELECT name, status, EXISTS (SELECT 1 FROM claimed) FROM target")


#: the inbox columns a PostgreSQL one-statement write binds per row (instance_id comes from the
#: CTE that names the instance)
_INBOX_COLUMNS = ("dedup_key", "execution_id", "event", "created_at")


def _inbox_params(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"r{i}_{column}": row[column] for i, row in enumerate(rows)
            for column in _INBOX_COLUMNS}


def _insert_inbox_sql(source: str, n_rows: int) -> str:
    """INSERT of ``n_rows`` inbox rows (parameters of `_inbox_params`) for the instance that the
    CTE ``source`` yields, if it yields one; duplicates (by dedup key) are skipped."""
    values = ", ".join("(" + ", ".join(f"%(r{i}_{c})s" for c in _INBOX_COLUMNS) + ")"
                       for i in range(n_rows))
    columns = ", ".join(_INBOX_COLUMNS)
    return (f"INSERT INTO {inbox.name} (instance_id, {columns}) "
            f"SELECT {source}.instance_id, {', '.join(f'v.{c}' for c in _INBOX_COLUMNS)} "
            f"FROM {source}, (VALUES {values}) AS v ({columns}) ON CONFLICT DO NOTHING")


def inbox_rows(targets: Iterable[tuple[str, InboxItem]], at: datetime) -> list[dict[str, Any]]:
    """Inbox table rows for ``(instance_id, item)`` pairs, created at ``at`` (aware)."""
    created = to_db_time(at)
    return [item.to_row(instance_id, created) for instance_id, item in targets]


def start_items(rec: NewInstance, events: list[HistoryEvent]) -> list[InboxItem]:
    """The inbox items that start ``rec``: dedup keys "start", then "start:1", "start:2"..."""
    return [InboxItem("start" if i == 0 else f"start:{i}", event, rec.execution_id)
            for i, event in enumerate(events)]


def create_instances(conn: Connection, dialect: str,
                     items: list[tuple[NewInstance, list[HistoryEvent]]],
                     at: datetime) -> list[bool]:
    """Create instances PENDING with their start events in their inbox; return, for each item,
    whether it was created.

    An id held by a live (non-terminal) instance is refused; one held by a finished instance is
    replaced (its history, inbox and timers are deleted). Later duplicates of an id are refused.
    """
    wanted: dict[str, tuple[NewInstance, list[HistoryEvent]]] = {}
    firsts: list[bool] = []
    for rec, events in items:
        firsts.append(rec.instance_id not in wanted)
        wanted.setdefault(rec.instance_id, (rec, events))
    rows = {iid: rec.to_row() for iid, (rec, _) in wanted.items()}
    ids = list(wanted)
    existing: dict[str, str] = {}
    for part in chunks(ids):
        query = select(instances.c.instance_id, instances.c.status).where(
            instances.c.instance_id.in_(part))
        if dialect != "sqlite":
            query = query.with_for_update()
        existing.update((iid, status) for iid, status in conn.execute(query))
    fresh = [iid for iid in ids if iid not in existing]
    finished = [iid for iid in ids
                if iid in existing and OrchestrationStatus(existing[iid]).is_terminal]
    created = set(finished)
    if fresh:  # (another transaction may create some of these ids meanwhile: skip those)
        values = [rows[iid] for iid in fresh]
        if dialect != "mysql":
            stmt = insert_ignore(dialect, instances.name, "instance_id")
            created.update(conn.execute(stmt, values).scalars())
        elif conn.execute(insert_ignore(dialect, instances.name), values).rowcount == len(fresh):
            created.update(fresh)
        else:
            created.update(_ours(conn, fresh, {iid: rows[iid]["execution_id"] for iid in fresh}))
    if finished:
        # the ended instances replaced stay in the metrics' counters (retention imports writes)
        from celery_durable.store.retention import count_as_purged
        count_as_purged(conn, dialect, finished)
        delete_instance_rows(conn, finished, (history, inbox, timers, redispatches))
        for iid in finished:
            row = {k: v for k, v in rows[iid].items() if k != "instance_id"}
            conn.execute(update(instances).where(instances.c.instance_id == iid).values(row))
    starts = [(iid, item) for iid in ids if iid in created
              for item in start_items(*wanted[iid])]
    insert_inbox(conn, dialect, inbox_rows(starts, at))
    delayed = [wanted[iid][0] for iid in ids if iid in created and wanted[iid][0].start_at]
    if delayed:  # a delayed start is a timer: the sweeper sends it when it nears
        conn.execute(insert(timers), [
            {"instance_id": rec.instance_id, "execution_id": rec.execution_id,
             "task_id": START_TIMER_ID, "fire_at": to_db_time(rec.start_at),
             "dispatched_at": None} for rec in delayed if rec.start_at is not None])
    return [first and rec.instance_id in created
            for first, (rec, _) in zip(firsts, items, strict=True)]


def create_fresh_instance(conn: Connection, rec: NewInstance, events: list[HistoryEvent],
                          at: datetime) -> bool:
    """PostgreSQL, one statement: create ``rec`` with its start events in its inbox if no
    instance holds its id; False (nothing written) if one does, finished or not: the caller then
    runs `create_instances`, which replaces a finished one. Run in autocommit, a start is one
    round trip."""
    row = rec.to_row()
    columns = tuple(sorted(row))
    starts = inbox_rows(((rec.instance_id, item) for item in start_items(rec, events)), at)
    params = {**{f"c_{column}": row[column] for column in columns}, **_inbox_params(starts)}
    return bool(conn.exec_driver_sql(_create_sql(columns, len(starts)), params).scalar_one())


@cache
def _create_sql(columns: tuple[str, ...], n_starts: int) -> str:
    values = ", ".join(f"%(c_{column})s" for column in columns)
    start = f", start AS ({_insert_inbox_sql('new_instance', n_starts)})" if n_starts else ""
    return (f"WITH new_instance AS (INSERT INTO {instances.name} ({', '.join(columns)}) "
            f"VALUES ({values}) ON CONFLICT DO NOTHING RETURNING instance_id){start} "
            "SELECT EXISTS (SELECT 1 FROM new_instance)")


def _ours(conn: Connection, ids: list[str], execution_ids: dict[str, str]) -> set[str]:
    ours: set[str] = set()
    for part in chunks(ids):
        query = select(instances.c.instance_id, instances.c.execution_id).where(
            instances.c.instance_id.in_(part))
        ours.update(iid for iid, eid in conn.execute(query) if execution_ids[iid] == eid)
    return ours


def delete_instance_rows(conn: Connection, ids: Sequence[str], tables: Iterable[Table]) -> None:
    """Delete the rows of instances ``ids`` from each of ``tables``."""
    for table in tables:
        for part in chunks(ids):
            conn.execute(delete(table).where(table.c.instance_id.in_(part)))
