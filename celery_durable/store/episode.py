"""An episode: one transaction that locks an instance, reads its inbox and commits what the
engine decided (history, status, timers, outbox, children, the parent's inbox) atomically."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update
from sqlalchemy.sql import ClauseElement

from celery_durable.engine.history import EXECUTION_STARTED, HistoryEvent
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import OrchestrationNotFoundError, OrchestrationStateError
from celery_durable.payload import dumps, loads
from celery_durable.store import pipelines
from celery_durable.store.records import (
    EpisodeCommit,
    InboxItem,
    InboxRow,
    InstanceRecord,
    from_db_time,
    history_event,
    history_row,
    now,
    to_db_time,
)
from celery_durable.store.schema import history, inbox, instances, outbox, timers, wakeups
from celery_durable.store.writes import (
    CHUNK,
    chunks,
    create_instances,
    deliver_rows,
    inbox_rows,
    insert_inbox,
)

log = logging.getLogger(__name__)

#: Most outbox or timer rows a PostgreSQL commit writes in its single statement (bigger episodes,
#: e.g. wide fan-outs, use one statement per table, batched by SQLAlchemy).
ONE_STATEMENT_ROWS = 200
#: History rows from which a PostgreSQL commit sends them as one array per column (``unnest``)
#: instead of a parameter per value: psycopg parses a query of over 50 parameters anew at each
#: execution (it caches those of fewer), which costs more than building the statement.
UNNEST_ROWS = 3

# The hot path's statements, built once (SQLAlchemy then reuses their compiled forms).
_INBOX_COLUMNS = (inbox.c.id, inbox.c.dedup_key, inbox.c.execution_id, inbox.c.event)
_READ_INSTANCE = select(instances).where(instances.c.instance_id == bindparam("iid"))
_LOCK_INSTANCE = {skip: _READ_INSTANCE.with_for_update(skip_locked=skip) for skip in (True, False)}
# The lock of an inline episode (it does not wait) also tells whether the inbox has rows, so that
# the usual step (its completion passed in, the inbox empty) skips the inbox read: see `_lock`.
_INBOX_WAITING = (select(inbox.c.id).where(inbox.c.instance_id == instances.c.instance_id)
                  .exists().label("inbox_waiting"))
_PEEK_INSTANCE = {
    "postgresql": select(instances, _INBOX_WAITING)
    .where(instances.c.instance_id == bindparam("iid"))
    .with_for_update(skip_locked=True, of=instances),
    "sqlite": select(instances, _INBOX_WAITING).where(instances.c.instance_id == bindparam("iid")),
}
_READ_INBOX = (select(*_INBOX_COLUMNS).where(inbox.c.instance_id == bindparam("iid"))
               .order_by(inbox.c.id))
_CLEAR_WAKEUP = delete(wakeups).where(wakeups.c.instance_id == bindparam("iid"))
# PostgreSQL, a woken episode: wait for the instance's lock, then release its wake-up claim, in
# one statement (the DELETE reads the locked row, so it runs once the lock is held)
_LOCKED = _LOCK_INSTANCE[False].cte("locked")
_LOCK_AND_CLEAR = select(_LOCKED).add_cte(
    delete(wakeups).where(wakeups.c.instance_id.in_(select(_LOCKED.c.instance_id)))
    .cte("cleared"))
_RECHECK_INBOX = (select(*_INBOX_COLUMNS)
                  .where(inbox.c.instance_id == bindparam("iid"), inbox.c.id > bindparam("after"))
                  .order_by(inbox.c.id))
_READ_HISTORY = (select(history.c.seq, history.c.kind, history.c.timestamp, history.c.task_id,
                        history.c.name, history.c.data)
                 .where(history.c.instance_id == bindparam("iid"),
                        history.c.execution_id == bindparam("eid"),
                        history.c.seq >= bindparam("from_seq"))
                 .order_by(history.c.seq))
# RETURNING makes SQLAlchemy send many rows as one multi-row INSERT (one round trip with
# psycopg, whose executemany would pipeline one statement per row).
_INSERT_HISTORY = insert(history).returning(history.c.seq)
_UPDATE_INSTANCE = update(instances).where(instances.c.instance_id == bindparam("b_iid"))
_INSERT_OUTBOX_IDS = insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True)
# SQLite: ordered RETURNING would cost a statement per row; under the write lock one INSERT gives
# its rows ascending rowids in VALUES order, so sorting the returned ids restores that order.
_INSERT_OUTBOX_IDS_SQLITE = insert(outbox).returning(outbox.c.id)


@dataclass
class WakeupClaim:
    """Filled in by an episode that found its instance locked elsewhere: whether the transaction
    that left its ``extra`` items in the inbox also claimed the instance's wake-up (the caller
    must then send it; see `Store.request_wakeup`), or found one already on its way."""

    claimed: bool = False


class Episode:
    """The locked instance, its inbox, and `commit` to write the episode's outcome.

    ``inbox`` holds the stored inbox rows (ordered by id) followed by the ``extra`` items given to
    `Store.episode` (with id None: they are consumed directly, never inserted, if the episode
    commits; an extra item whose dedup key is already stored is left out). Statements run in the
    episode's transaction, committed when its block exits. `commit` may be called again (e.g.
    after `recheck_inbox` found more); ``instance`` always reflects what was written.
    ``refused_children`` lists child ids a live instance already held. ``outbox_acks`` are ids
    of published outbox rows (of any instance) that the first commit deletes.
    """

    def __init__(self, conn: Connection, dialect: str, instance: InstanceRecord,
                 stored: list[InboxRow], extra: list[InboxItem],
                 outbox_acks: Sequence[int] = (), *, pipelined: bool = False) -> None:
        self._conn = conn
        self._pipelined = pipelined
        self.outbox_acks = list(outbox_acks)
        self._dialect = dialect
        self._max_id = max((row.id for row in stored if row.id is not None), default=0)
        seen = {row.dedup_key for row in stored}
        self.extra: list[InboxItem] = []  # extra items not already stored (by dedup key)
        for item in extra:
            if item.dedup_key not in seen:
                seen.add(item.dedup_key)
                self.extra.append(item)
        self.instance = instance
        self.inbox = stored + [InboxRow.from_item(item) for item in self.extra]
        self.refused_children: list[str] = []
        self.committed = False
        self.failed = False
        #: the transaction committed with the last commit (see `commit`): it is over
        self.finished = False

    @property
    def connection(self) -> Connection:
        """The episode's connection, in its transaction (for reads that must see its locks)."""
        return self._conn

    @property
    def dialect(self) -> str:
        return self._dialect

    def load_history(self, from_seq: int = 0) -> list[HistoryEvent]:
        """The current execution's history from ``from_seq`` on, ordered by seq (one query)."""
        self._check_open()
        params = {"iid": self.instance.instance_id, "eid": self.instance.execution_id,
                  "from_seq": from_seq}
        return [history_event(row) for row in self._conn.execute(_READ_HISTORY, params).mappings()]

    def recheck_inbox(self) -> list[InboxRow]:
        """Inbox rows that arrived since the episode read the inbox; they extend ``inbox``."""
        self._check_open()
        if self._dialect == "sqlite":  # the write lock held since BEGIN IMMEDIATE kept them out
            return []
        params = {"iid": self.instance.instance_id, "after": self._max_id}
        rows = [InboxRow.from_row(row)
                for row in self._conn.execute(_RECHECK_INBOX, params).mappings()]
        if rows:
            self._max_id = max(row.id for row in rows if row.id is not None)
            self.inbox.extend(rows)
        return rows

    def commit(self, outcome: EpisodeCommit, *, last: bool = False) -> list[int]:
        """Write ``outcome`` in the episode's transaction; return the new outbox ids in order.

        ``last``: nothing follows in this episode, so the transaction may commit with the write
        (PostgreSQL through psycopg: the write and COMMIT in one round trip, see
        store/pipelines.py; ``finished`` then says so). Elsewhere it commits when the episode's
        block exits, as without ``last``.
        """
        self._check_open()
        try:
            ids = self._write(outcome, commit=last and self._pipelined)
        except BaseException:
            self.failed = True
            raise
        self.committed = True
        return ids

    def _check_open(self) -> None:
        if self.finished:
            raise OrchestrationStateError(
                f"the episode of {self.instance.instance_id!r} committed its transaction with "
                "its last commit; run another episode to write more")

    def _write(self, outcome: EpisodeCommit, commit: bool) -> list[int]:
        conn, inst, at = self._conn, self.instance, now()
        iid, execution_id, generation = inst.instance_id, inst.execution_id, inst.generation
        values: dict[str, Any] = {}
        if outcome.new_execution is not None:
            for table in (history, timers):
                conn.execute(delete(table).where(table.c.instance_id == iid,
                                                 table.c.execution_id == execution_id))
            execution_id, generation = outcome.new_execution
            values.update(execution_id=execution_id, generation=generation)
            # the new execution's start waits in the inbox: the instance has its version already
            # (the sweeper and versioned workers go by it)
            pending = next((item.event for target, item in outcome.notify
                            if target == iid and item.event.kind == EXECUTION_STARTED), None)
            if pending is not None and isinstance(pending.data, dict):
                values["version"] = pending.data.get("version")
        started = next((e for e in outcome.new_events if e.kind == EXECUTION_STARTED), None)
        if started is not None and isinstance(started.data, dict):  # e.g. after continue-as-new
            values.update(input=dumps(started.data.get("input")),
                          version=started.data.get("version"))
        first_seq = 0 if outcome.new_execution is not None else inst.history_len
        _check_seqs(iid, outcome.new_events, first_seq)
        timer_rows = [
            {"instance_id": iid, "execution_id": execution_id, "task_id": timer.task_id,
             "fire_at": to_db_time(timer.fire_at),
             "dispatched_at": None if timer.dispatched_at is None
             else to_db_time(timer.dispatched_at)}
            for timer in outcome.timers]
        if outcome.children:
            created = create_instances(conn, self._dialect, outcome.children, at)
            self.refused_children.extend(rec.instance_id for (rec, _), ok
                                         in zip(outcome.children, created, strict=True) if not ok)
        insert_inbox(conn, self._dialect, inbox_rows(outcome.notify, at))
        history_len = first_seq + len(outcome.new_events)
        completed_at = None if outcome.completed_at is None else to_db_time(outcome.completed_at)
        values.update(status=outcome.status_value(),
                      output=None if outcome.output is None else dumps(outcome.output),
                      failure=outcome.failure_json(),
                      custom_status=(None if outcome.custom_status is None
                                     else dumps(outcome.custom_status)),
                      completed_at=completed_at, history_len=history_len,
                      updated_at=to_db_time(at))
        rows = _Rows(
            delete_timers=outcome.delete_timers, timers=timer_rows,
            history=[history_row(iid, execution_id, event) for event in outcome.new_events],
            consumed=[i for i in outcome.consumed_inbox_ids if i is not None],
            acked=self.outbox_acks,
            outbox=[{"instance_id": iid, "message": dumps(message), "created_at": to_db_time(at)}
                    for message in outcome.outbox])
        self.outbox_acks = []
        if self._dialect == "postgresql" and rows.fit_one_statement():
            outbox_ids = _write_in_one_statement(conn, iid, values, rows, commit=commit)
            self.finished = commit
        else:
            outbox_ids = self._write_statements(iid, values, rows)
        self.instance = dataclasses.replace(
            inst, status=OrchestrationStatus(values["status"]), output=outcome.output,
            failure=outcome.failure_dict(),
            custom_status=outcome.custom_status, execution_id=execution_id,
            input=loads(values["input"]) if "input" in values else inst.input,
            version=values.get("version", inst.version),
            generation=generation, history_len=history_len,
            completed_at=None if completed_at is None else from_db_time(completed_at),
            updated_at=from_db_time(values["updated_at"]))
        return outbox_ids

    def _write_statements(self, iid: str, values: dict[str, Any], rows: _Rows) -> list[int]:
        conn = self._conn
        if rows.delete_timers:
            conn.execute(delete(timers).where(timers.c.instance_id == iid))
        if rows.timers:
            conn.execute(insert(timers), rows.timers)
        if self._dialect == "postgresql" and len(rows.history) >= UNNEST_ROWS:
            conn.exec_driver_sql(_UNNEST_HISTORY, _history_arrays(rows.history))
        elif rows.history:
            conn.execute(_INSERT_HISTORY, rows.history)
        for part in chunks(rows.consumed):
            conn.execute(delete(inbox).where(inbox.c.instance_id == iid, inbox.c.id.in_(part)))
        for part in chunks(rows.acked):
            conn.execute(delete(outbox).where(outbox.c.id.in_(part)))
        outbox_ids = self._insert_outbox(rows.outbox)
        conn.execute(_UPDATE_INSTANCE, {"b_iid": iid, **values})
        return outbox_ids

    def _insert_outbox(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        if len(rows) == 1:
            key = self._conn.execute(insert(outbox), rows[0]).inserted_primary_key
            assert key is not None
            return [int(key[0])]
        if self._dialect == "sqlite":
            return sorted(int(i) for i in self._conn.execute(_INSERT_OUTBOX_IDS_SQLITE, rows)
                          .scalars())
        if self._dialect == "postgresql" and len(rows) >= UNNEST_ROWS:  # ids ascend in order
            params = {"iid": rows[0]["instance_id"], "at": rows[0]["created_at"],
                      "messages": [row["message"] for row in rows]}
            return sorted(int(i) for i in self._conn.exec_driver_sql(_UNNEST_OUTBOX, params)
                          .scalars())
        return [int(i) for i in self._conn.execute(_INSERT_OUTBOX_IDS, rows).scalars()]


@dataclass
class _Rows:
    """The rows an episode's commit inserts or deletes besides the instance's update
    (``delete_timers``: all of the instance's timers, before ``timers`` are inserted)."""

    delete_timers: bool
    timers: list[dict[str, Any]]
    history: list[dict[str, Any]]
    consumed: list[int]
    acked: list[int]
    outbox: list[dict[str, Any]]

    def fit_one_statement(self) -> bool:
        # history rows of any number fit: from UNNEST_ROWS on they go as arrays; a timer
        # deleted and inserted again in one statement would break its unique key
        return (len(self.outbox) <= ONE_STATEMENT_ROWS and len(self.timers) <= ONE_STATEMENT_ROWS
                and not (self.delete_timers and self.timers)
                and len(self.consumed) <= CHUNK and len(self.acked) <= CHUNK)


def _write_in_one_statement(conn: Connection, iid: str, values: dict[str, Any], rows: _Rows,
                            commit: bool = False) -> list[int]:
    """PostgreSQL: the timers' delete or insert, the history insert, the inbox and outbox
    deletes, the outbox insert and the instance's update as one statement (data-modifying
    CTEs): one round trip for a step; with ``commit``, COMMIT goes in the same round trip
    (store/pipelines.py)."""
    unnest = len(rows.history) >= UNNEST_ROWS
    sql = _one_statement_sql(tuple(sorted(values)), -1 if unnest else len(rows.history),
                             bool(rows.consumed), bool(rows.acked), len(rows.outbox),
                             rows.delete_timers, len(rows.timers))
    params: dict[str, Any] = {"b_iid": iid, "consumed": rows.consumed, "acked": rows.acked}
    params.update((f"v_{column}", value) for column, value in values.items())
    if unnest:
        params.update(_history_arrays(rows.history))
    for prefix, table_rows in (("h", [] if unnest else rows.history), ("o", rows.outbox),
                               ("t", rows.timers)):
        for i, row in enumerate(table_rows):
            params.update((f"{prefix}{i}_{column}", value) for column, value in row.items())
    if commit:
        returned = pipelines.write_and_commit(conn, sql, params)
    else:
        result = conn.exec_driver_sql(sql, params)
        returned = [tuple(row) for row in result] if rows.outbox else []
    if not rows.outbox:
        return []
    ((ids,),) = returned
    return sorted(int(i) for i in ids)


@lru_cache(maxsize=512)
def _one_statement_sql(columns: tuple[str, ...], n_history: int, consumed: bool, acked: bool,
                       n_outbox: int, delete_timers: bool = False, n_timers: int = 0) -> str:
    # SQL text built once per shape: SQLAlchemy does not cache the compiled form of statements
    # with data-modifying CTEs, and compiling one costs more than the round trips it saves.
    ctes = []
    if delete_timers:
        ctes.append(f"gone_timers AS (DELETE FROM {timers.name} WHERE instance_id = %(b_iid)s)")
    if n_timers:
        ctes.append(f"new_timers AS ({_insert_sql(timers.name, _TIMER_COLUMNS, 't', n_timers)})")
    if n_history:  # -1: as arrays (_history_arrays)
        ctes.append("new_history AS (" + (_UNNEST_HISTORY if n_history < 0 else
                    _insert_sql(history.name, _HISTORY_COLUMNS, "h", n_history)) + ")")
    if consumed:
        ctes.append(f"consumed AS (DELETE FROM {inbox.name} WHERE instance_id = %(b_iid)s "
                    "AND id = ANY(%(consumed)s))")
    if acked:
        ctes.append(f"acked AS (DELETE FROM {outbox.name} WHERE id = ANY(%(acked)s))")
    if n_outbox:
        ctes.append(f"new_outbox AS ({_insert_sql(outbox.name, _OUTBOX_COLUMNS, 'o', n_outbox)}"
                    " RETURNING id)")
    sets = ", ".join(f"{column} = %(v_{column})s" for column in columns)
    sql = f"UPDATE {instances.name} SET {sets} WHERE instance_id = %(b_iid)s"
    if n_outbox:
        sql += " RETURNING (SELECT array_agg(id) FROM new_outbox)"
    return f"WITH {', '.join(ctes)} {sql}" if ctes else sql


_HISTORY_COLUMNS = ("instance_id", "execution_id", "seq", "kind", "timestamp", "task_id", "name",
                    "data")
_OUTBOX_COLUMNS = ("instance_id", "message", "created_at")
_TIMER_COLUMNS = ("instance_id", "execution_id", "task_id", "fire_at", "dispatched_at")
# PostgreSQL: history rows as one array per column (the instance and execution are the same in
# every row); `_history_arrays` gives its parameters. Arrays go in binary (%b): psycopg escapes
# each element of a text-format array with a regular expression.
_UNNEST_HISTORY = (
    f"INSERT INTO {history.name} ({', '.join(_HISTORY_COLUMNS)}) "
    "SELECT %(hu_instance_id)s, %(hu_execution_id)s, u.* FROM unnest(%(hu_seq)b::integer[], "
    "%(hu_kind)b::varchar[], %(hu_timestamp)b::timestamp[], %(hu_task_id)b::integer[], "
    "%(hu_name)b::varchar[], %(hu_data)b::text[]) AS u")


# PostgreSQL: the many outbox rows of one episode (same instance and time) as one array
_UNNEST_OUTBOX = (
    f"INSERT INTO {outbox.name} (instance_id, message, created_at) "
    "SELECT %(iid)s, u.message, %(at)s FROM unnest(%(messages)b::text[]) "
    "WITH ORDINALITY AS u(message, n) ORDER BY u.n RETURNING id")


def _history_arrays(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of `_UNNEST_HISTORY` for ``rows`` (`history_row` dicts of one
    execution)."""
    params: dict[str, Any] = {"hu_instance_id": rows[0]["instance_id"],
                              "hu_execution_id": rows[0]["execution_id"]}
    for column in _HISTORY_COLUMNS[2:]:
        params[f"hu_{column}"] = [row[column] for row in rows]
    return params


def _insert_sql(table: str, columns: tuple[str, ...], prefix: str, n: int) -> str:
    rows = ", ".join("(" + ", ".join(f"%({prefix}{i}_{c})s" for c in columns) + ")"
                     for i in range(n))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {rows}"


def _check_seqs(instance_id: str, events: list[HistoryEvent], first: int) -> None:
    for offset, event in enumerate(events):
        if event.seq != first + offset:
            raise ValueError(
                f"history event {event.describe()} of instance {instance_id!r} has seq "
                f"{event.seq}, expected {first + offset}: new events must continue the "
                f"history contiguously (history_len is {first})")


@contextmanager
def run_episode(engine: Engine, dialect: str, instance_id: str, extra: Sequence[InboxItem],
                wait: bool = False, outbox_acks: Sequence[int] = (), *,
                clear_wakeup: bool = False,
                claim: WakeupClaim | None = None) -> Iterator[Episode | None]:
    """Lock ``instance_id`` and yield its `Episode`, or None if another transaction holds it
    (with ``wait``, wait for that transaction to end instead; SQLite always waits).

    When it is held elsewhere, ``extra`` goes to the inbox (idempotently) before None is yielded,
    and with ``claim`` the same transaction claims the instance's wake-up (one transaction for
    a completion that meets a busy instance, instead of two).
    Leaving the block without `Episode.commit` writes only ``extra`` to the inbox; an exception
    rolls the episode back, saves ``extra`` in a transaction of its own and propagates.
    """
    items = list(extra)
    inbox_rows(((instance_id, item) for item in items), now())  # refuse bad ids/keys up front
    with engine.connect() as conn:
        pipelined = dialect == "postgresql" and pipelines.available(conn)
        if pipelined:
            pipelines.prepare(conn)
        tx = conn.begin()
        try:
            lock = _lock_pipelined if pipelined else _lock
            row, stored = lock(conn, dialect, instance_id, wait, clear_wakeup)
            if row is None:
                _locked_elsewhere(conn, dialect, instance_id, items, claim)
                tx.commit()
            else:
                episode = Episode(conn, dialect, InstanceRecord.from_row(row), stored, items,
                                  outbox_acks, pipelined=pipelined)
        except BaseException:
            tx.rollback()
            raise
        if row is None:
            yield None
            return
        try:
            yield episode
            if episode.failed:
                raise OrchestrationStateError(
                    f"the commit of an episode of {instance_id!r} failed and its transaction "
                    "was rolled back; let the commit's exception propagate instead")
        except BaseException:
            tx.rollback()
            if not episode.finished:  # (finished: its last commit consumed them)
                _save_extra(engine, dialect, instance_id, episode.extra)
            raise
        if not episode.committed:
            insert_inbox(conn, dialect, inbox_rows(((instance_id, i) for i in episode.extra),
                                                   now()))
        tx.commit()


def _lock(conn: Connection, dialect: str, instance_id: str, wait: bool,
          clear_wakeup: bool = False) -> tuple[Any, list[InboxRow]]:
    """The locked instance's row (None if locked elsewhere, or unknown) and its inbox rows.

    The inbox is read by a statement of its own, after the lock is held: under READ COMMITTED a
    statement that waited for (or raced) the previous holder's commit locks the instance's new
    row version but would read every other table from its older snapshot, rows the holder
    consumed included.

    An episode that does not wait (inline, after a completion) on PostgreSQL or SQLite learns
    from the lock statement whether the inbox has rows, and reads it only if so (one round trip
    less on the usual step). On PostgreSQL that answer may be stale in one direction only: rows
    committed after the statement's snapshot and before the lock was taken. Every inbox row is
    written with a wake-up on its way (a claimed or sent episode message, the client's, a
    child's or the sweeper's), and that woken episode reads the inbox itself after taking the
    lock: such rows wait for it, as they would have had this episode run a moment earlier. A
    stale "has rows" only costs the read. On SQLite the answer is exact (the transaction holds
    the write lock); MySQL/MariaDB always read the inbox.

    A woken episode on PostgreSQL takes the lock and releases the wake-up claim in one
    statement (`_LOCK_AND_CLEAR`): the claim's DELETE reads the locked row, so it runs once the
    lock is held, as the two statements did. Its snapshot is the statement's: a claim made
    while the lock was awaited is not seen and stays, which is sound (its wake-up is on its
    way; this episode reads the inbox rows written with it by the next statement anyway).
    """
    params = {"iid": instance_id}
    peek = _PEEK_INSTANCE.get(dialect) if not wait and not clear_wakeup else None
    cleared = clear_wakeup and wait and dialect == "postgresql"
    if peek is not None:
        query = peek
    elif cleared:
        query = _LOCK_AND_CLEAR
    else:
        query = _READ_INSTANCE if dialect == "sqlite" else _LOCK_INSTANCE[not wait]
    row = conn.execute(query, params).mappings().first()
    if row is None:
        return None, []
    if clear_wakeup and not cleared:  # before the inbox is read: see Store.request_wakeup
        conn.execute(_CLEAR_WAKEUP, params)
    if peek is not None and not row["inbox_waiting"]:
        return row, []
    return row, [InboxRow.from_row(r) for r in conn.execute(_READ_INBOX, params).mappings()]


def _lock_pipelined(conn: Connection, dialect: str, instance_id: str, wait: bool,
                    clear_wakeup: bool = False) -> tuple[Any, list[InboxRow]]:
    """`_lock` with BEGIN and its statements in one round trip (store/pipelines.py)."""
    params = {"iid": instance_id}
    if not wait and not clear_wakeup:  # the peek: see `_lock`
        (found,) = pipelines.begin_and_run(conn, [_PEEK_INSTANCE[dialect]], params)
        row = found[0] if found else None
        if row is None or not row["inbox_waiting"]:
            return row, []
        stored: Sequence[Any] = conn.execute(_READ_INBOX, params).mappings().all()
    else:
        statements: list[ClauseElement]
        if clear_wakeup and wait:  # one statement: see `_lock`
            statements = [_LOCK_AND_CLEAR, _READ_INBOX]
        else:
            statements = [_LOCK_INSTANCE[not wait], *([_CLEAR_WAKEUP] if clear_wakeup else []),
                          _READ_INBOX]
        results = pipelines.begin_and_run(conn, statements, params)
        row = results[0][0] if results[0] else None
        stored = results[-1]
    if row is None:
        return None, []
    return row, [InboxRow.from_row(r) for r in stored]


def _locked_elsewhere(conn: Connection, dialect: str, instance_id: str,
                      items: list[InboxItem], claim: WakeupClaim | None) -> None:
    rows = inbox_rows(((instance_id, item) for item in items), now())
    claimed = deliver_rows(conn, dialect, instance_id, rows, claim=claim is not None)
    if claimed is None:
        raise OrchestrationNotFoundError(
            f"no orchestration instance has id {instance_id!r}; schedule it first, or check "
            "the id (it may have been purged)")
    if claim is not None:
        claim.claimed = claimed


def _save_extra(engine: Engine, dialect: str, instance_id: str, items: list[InboxItem]) -> None:
    if not items:
        return
    try:
        with engine.begin() as conn:
            insert_inbox(conn, dialect, inbox_rows(((instance_id, i) for i in items), now()))
    except Exception:
        log.exception("could not keep %d inbox item(s) of %r after a failed episode",
                      len(items), instance_id)
