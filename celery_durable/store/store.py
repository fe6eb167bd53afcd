"""`Store`: the SQL source of truth of every orchestration; each method is one transaction."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.status import TERMINAL_STATUSES, OrchestrationStatus
from celery_durable.errors import OrchestrationNotFoundError, OrchestrationStateError
from celery_durable.payload import loads
from celery_durable.store import limits
from celery_durable.store.engine import (
    READ_ONLY,
    StatementCount,
    StatementCounter,
    dialect_of,
    is_deadlock,
    make_engine,
    masked_url,
)
from celery_durable.store.entities import EntityStore
from celery_durable.store.episode import Episode, WakeupClaim, run_episode
from celery_durable.store.heartbeats import Heartbeats
from celery_durable.store.metrics import StoreMetrics, read_metrics
from celery_durable.store.migrate import upgrade_schema
from celery_durable.store.outbox_acks import OutboxAcks
from celery_durable.store.overdue import (
    OverdueTask,
    claim_overdue,
    completion_recorded,
    find_overdue,
    mark_redispatched,
)
from celery_durable.store.records import (
    Delivery,
    InboxItem,
    InstanceRecord,
    NewInstance,
    TimerRow,
    history_event,
    now,
    to_db_time,
)
from celery_durable.store.retention import (
    BATCH,
    delete_ended,
    delete_redispatches,
    ended_batch,
    ended_descendants,
    ended_statuses,
    settled_redispatches,
)
from celery_durable.store.rewind import MessagesFor, RewindOutcome, rewind_instance
from celery_durable.store.schedules import ScheduleStore
from celery_durable.store.schema import (
    history,
    inbox,
    instances,
    outbox,
    timers,
    wakeups,
)
from celery_durable.store.starts import execution_start
from celery_durable.store.writes import (
    chunks,
    claim_wakeup,
    create_fresh_instance,
    create_instances,
    delete_instance_rows,
    deliver_rows,
    deliver_running_rows,
    inbox_rows,
    insert_inbox,
)

T = TypeVar("T")
TimerKey = tuple[str, str, int]
_TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)


def _not_found(instance_id: str) -> OrchestrationNotFoundError:
    return OrchestrationNotFoundError(
        f"no orchestration instance has id {instance_id!r}; check the id, or schedule the "
        "orchestration first (it may also have been purged)")


def _again_after_deadlocks(transaction: Callable[[], T], attempts: int = 5) -> T:
    """Run ``transaction``, again when the database aborted it to break a deadlock (InnoDB does
    so when several transactions insert a key another one is deleting: wake-up claims)."""
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except DBAPIError as error:
            if attempt == attempts or not is_deadlock(error):
                raise
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


def _instance_filters(statuses: Sequence[str] | None, name: str | None,
                      created_from: datetime | None, created_to: datetime | None,
                      id_contains: str | None) -> list[Any]:
    """The WHERE clauses of the instance listing filters that are given."""
    clauses: list[Any] = []
    if statuses is not None:
        clauses.append(instances.c.status.in_([OrchestrationStatus(s).value for s in statuses]))
    if name is not None:
        clauses.append(instances.c.name == name)
    if created_from is not None:
        clauses.append(instances.c.created_at >= to_db_time(created_from))
    if created_to is not None:
        clauses.append(instances.c.created_at <= to_db_time(created_to))
    if id_contains:
        clauses.append(instances.c.instance_id.contains(id_contains, autoescape=True))
    return clauses


class Store:
    """The store at ``url`` (SQLite, PostgreSQL or MySQL/MariaDB through SQLAlchemy).

    Engines are per process (a new one after fork, e.g. under Celery's prefork pool); the schema
    is created or upgraded on first use in each process.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = dialect_of(url)
        self._engines: dict[int, Engine] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._schema_ready: set[int] = set()
        self._counter = StatementCounter()
        self._local = threading.local()  # .episodes: episodes open in this thread
        self.outbox_acks = OutboxAcks(self.delete_outbox)
        #: the schedules (store/schedules.py)
        self.schedules = ScheduleStore(self)
        self.entities = EntityStore(self)  # durable entities (store/entities.py)
        #: activities' heartbeats (store/heartbeats.py)
        self.heartbeats = Heartbeats(self)

    def __repr__(self) -> str:
        return f"Store({masked_url(self.url)!r})"

    # -- engine and schema -----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine (created on first use, and anew after a fork)."""
        pid = os.getpid()
        engine = self._engines.get(pid)
        if engine is not None:
            return engine
        with self._locks.setdefault(pid, threading.Lock()):
            engine = self._engines.get(pid)
            if engine is None:
                for other in [p for p in self._engines if p != pid]:
                    # Inherited from the parent: drop its pool without closing the parent's
                    # connections (SQLAlchemy's advice for engines that cross a fork).
                    self._engines.pop(other).dispose(close=False)
                engine = make_engine(self.url)
                self._counter.attach(engine)
                self._engines[pid] = engine
        return engine

    def create_schema(self) -> None:
        """Create or upgrade the schema (Alembic ``upgrade head``); idempotent, race-safe."""
        engine = self.engine
        upgrade_schema(engine, self.dialect)
        self._schema_ready.add(os.getpid())

    def dispose(self) -> None:
        """Close this process's pooled connections (the store stays usable)."""
        engine = self._engines.pop(os.getpid(), None)
        if engine is not None:
            engine.dispose()

    def statement_count(self) -> AbstractContextManager[StatementCount]:
        """Count the SQL statements this process sends through the store (``.count``)."""
        return self._counter.counting()

    def _ready(self) -> Engine:
        engine = self.engine
        pid = os.getpid()
        if pid not in self._schema_ready:
            with self._locks.setdefault(pid, threading.Lock()):
                if pid not in self._schema_ready:
                    upgrade_schema(engine, self.dialect)
                    self._schema_ready.add(pid)
        return engine

    @contextmanager
    def _write(self, one_statement: bool = False) -> Iterator[Connection]:
        """A connection in a write transaction; with ``one_statement`` (the caller runs a
        single statement, atomic by itself) in autocommit, which spares the BEGIN and COMMIT
        round trips."""
        self._no_nested_write("a write to the store")
        if one_statement:
            with self._autocommit() as conn:
                yield conn
            return
        with self._ready().begin() as conn:
            yield conn

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """A connection whose every statement commits by itself (no BEGIN, no COMMIT)."""
        with self._ready().connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads, in a read transaction (SQLite: one snapshot for all its
        statements). PostgreSQL runs at READ COMMITTED, where every statement takes a snapshot
        of its own even inside a transaction: reads there run in autocommit, which spares each
        its BEGIN and COMMIT round trips (psycopg switches to autocommit without one; MySQL
        drivers would send a statement each way)."""
        if self.dialect == "postgresql":
            with self._autocommit() as conn:
                yield conn
            return
        with self._ready().connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    def _locking(self, query: Select[Any], skip_locked: bool = False) -> Select[Any]:
        if self.dialect == "sqlite":  # the BEGIN IMMEDIATE transaction is the lock
            return query
        return query.with_for_update(skip_locked=skip_locked)

    # -- instances and their inbox ---------------------------------------------------------------

    def create_instance(self, rec: NewInstance, start_events: list[HistoryEvent]) -> bool:
        """Create ``rec`` (PENDING, ``start_events`` in its inbox); False if the id is live.

        An instance that holds the id and has finished is replaced (its history, inbox and
        timers are deleted), as durabletask reuses the ids of finished instances.
        """
        if self.dialect == "postgresql" and rec.start_at is None:  # the usual start: see
            with self._write(one_statement=True) as conn:        # create_fresh_instance
                if create_fresh_instance(conn, rec, start_events, now()):
                    return True
        with self._write() as conn:
            (created,) = create_instances(conn, self.dialect, [(rec, start_events)], now())
        return created

    def create_instance_in(self, conn: Connection, rec: NewInstance,
                           start_events: list[HistoryEvent]) -> bool:
        """`create_instance` inside the caller's transaction on ``conn`` (a connection to this
        store's database, committed or rolled back by the caller)."""
        self._ready()  # the schema, through a connection of the store's own
        dialect = "mysql" if conn.dialect.name == "mariadb" else conn.dialect.name
        (created,) = create_instances(conn, dialect, [(rec, start_events)], now())
        return created

    def append_inbox(self, instance_id: str, items: Sequence[InboxItem]) -> int:
        """Add ``items`` to the instance's inbox, skipping known dedup keys; return how many
        were new. Raises `OrchestrationNotFoundError` for an unknown instance."""
        rows = inbox_rows(((instance_id, item) for item in items), now())
        with self._write() as conn:
            if conn.execute(select(instances.c.instance_id)
                            .where(instances.c.instance_id == instance_id)).first() is None:
                raise _not_found(instance_id)
            return insert_inbox(conn, self.dialect, rows)

    def deliver(self, instance_id: str, items: Sequence[InboxItem]) -> bool:
        """`append_inbox`, and claim the instance's wake-up in the same transaction: True when
        the caller must send the wake-up, False when one is already on its way (it will see
        ``items``). Raises `OrchestrationNotFoundError` for an unknown instance."""
        rows = inbox_rows(((instance_id, item) for item in items), now())

        def deliver() -> bool:
            with self._write(one_statement=self.dialect == "postgresql") as conn:
                claimed = deliver_rows(conn, self.dialect, instance_id, rows)
            if claimed is None:
                raise _not_found(instance_id)
            return claimed

        return _again_after_deadlocks(deliver)

    def deliver_running(self, instance_id: str, items: Sequence[InboxItem]) -> Delivery | None:
        """`deliver` to an instance that has not ended (what the client's events, suspend,
        resume and terminate do): the instance's orchestrator, status and whether the caller
        must send the wake-up; an instance that has ended receives nothing (its status says
        so); None for an unknown one. One statement on PostgreSQL, one transaction elsewhere."""
        rows = inbox_rows(((instance_id, item) for item in items), now())

        def deliver() -> Delivery | None:
            with self._write(one_statement=self.dialect == "postgresql") as conn:
                return deliver_running_rows(conn, self.dialect, instance_id, rows)

        return _again_after_deadlocks(deliver)

    def request_wakeup(self, instance_id: str) -> bool:
        """Claim the wake-up of an instance whose inbox just received something: True when the
        caller must send it, False when a wake-up is already on its way.

        Sound because a woken episode (``store.episode(..., wait=True)``) releases the claim
        after taking the instance's lock and before reading the inbox: a claim that is still
        held belongs to an episode that has not read the inbox yet.
        """
        def claim() -> bool:
            with self._write() as conn:
                return claim_wakeup(conn, self.dialect, instance_id)

        return _again_after_deadlocks(claim)

    def episode(self, instance_id: str, extra: Sequence[InboxItem] = (), *,
                wait: bool = False,
                claim: WakeupClaim | None = None) -> AbstractContextManager[Episode | None]:
        """Lock the instance for an episode: ``with store.episode(iid, extra) as ep:``.

        ``ep`` is None when another transaction holds the instance (``extra`` is then in its
        inbox: leave a wake-up behind, see `request_wakeup`; with ``claim``, the transaction
        that wrote ``extra`` claimed it already, and ``claim.claimed`` tells whether to send
        it); with ``wait`` the lock is waited for instead, and the episode (a woken one)
        releases the instance's wake-up claim. Raises `OrchestrationNotFoundError` for an
        unknown instance. See `Episode` and `run_episode`.
        """
        self._no_nested_write("an episode")
        return self._track(instance_id, extra, wait, claim)

    @contextmanager
    def _track(self, instance_id: str, extra: Sequence[InboxItem], wait: bool,
               claim: WakeupClaim | None) -> Iterator[Episode | None]:
        engine = self._ready()
        self._local.episodes = getattr(self._local, "episodes", 0) + 1
        acks = self.outbox_acks.take()  # deleted by this episode's commit, if it commits
        committed = False
        try:
            with run_episode(engine, self.dialect, instance_id, extra, wait, acks,
                             clear_wakeup=wait, claim=claim) as ep:
                yield ep
                committed = ep is not None and ep.committed
        finally:
            self._local.episodes -= 1
            if not committed:
                self.outbox_acks.restore(acks)

    def _no_nested_write(self, what: str) -> None:
        open_episodes: int = getattr(self._local, "episodes", 0)
        if self.dialect == "sqlite" and open_episodes:
            raise OrchestrationStateError(
                f"{what} cannot run inside an episode on SQLite: the episode holds the database's "
                "write lock, so this would wait for itself; do it after the episode's block "
                "(reads are fine)")

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance's record, or None."""
        with self._read() as conn:
            row = conn.execute(select(instances)
                               .where(instances.c.instance_id == instance_id)).mappings().first()
        return None if row is None else InstanceRecord.from_row(row)

    def execution_start(self, instance_id: str, execution_id: str) -> HistoryEvent | None:
        """The ``ExecutionStarted`` event of one execution (see `store.starts`), or None."""
        with self._read() as conn:
            return execution_start(conn, instance_id, execution_id)

    def get_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's history in order; raises `OrchestrationNotFoundError`."""
        current = and_(instances.c.instance_id == history.c.instance_id,
                       instances.c.execution_id == history.c.execution_id)
        query = (select(history).join(instances, current)
                 .where(history.c.instance_id == instance_id).order_by(history.c.seq))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            if not rows and conn.execute(select(instances.c.instance_id).where(
                    instances.c.instance_id == instance_id)).first() is None:
                raise _not_found(instance_id)
        return [history_event(row) for row in rows]

    def query_instances(self, *, statuses: Sequence[str] | None = None, name: str | None = None,
                        created_from: datetime | None = None,
                        created_to: datetime | None = None, limit: int = 100,
                        after: tuple[datetime, str] | None = None) -> list[InstanceRecord]:
        """Instances matching every given filter (created_from/created_to inclusive), ordered by
        (created_at, instance_id), starting after the ``after`` key (keyset paging)."""
        query = select(instances)
        if statuses is not None:
            query = query.where(instances.c.status.in_(
                [OrchestrationStatus(s).value for s in statuses]))
        if name is not None:
            query = query.where(instances.c.name == name)
        if created_from is not None:
            query = query.where(instances.c.created_at >= to_db_time(created_from))
        if created_to is not None:
            query = query.where(instances.c.created_at <= to_db_time(created_to))
        if after is not None:
            at, after_id = to_db_time(after[0]), after[1]
            query = query.where(or_(instances.c.created_at > at,
                                    (instances.c.created_at == at)
                                    & (instances.c.instance_id > after_id)))
        query = query.order_by(instances.c.created_at, instances.c.instance_id).limit(limit)
        with self._read() as conn:
            return [InstanceRecord.from_row(row) for row in conn.execute(query).mappings()]

    def count_by_status(self) -> dict[str, int]:
        """How many instances have each status (statuses with none are left out)."""
        query = select(instances.c.status, func.count()).group_by(instances.c.status)
        with self._read() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    def search_instances(self, *, statuses: Sequence[str] | None = None,
                         name: str | None = None, created_from: datetime | None = None,
                         created_to: datetime | None = None, id_contains: str | None = None,
                         limit: int = 100, after: tuple[datetime, str] | None = None
                         ) -> list[InstanceRecord]:
        """As `query_instances` (plus ``id_contains``: part of the instance id), newest first:
        ordered by (created_at, instance_id) descending, after the ``after`` key."""
        query = select(instances).where(*_instance_filters(
            statuses, name, created_from, created_to, id_contains))
        if after is not None:
            at, after_id = to_db_time(after[0]), after[1]
            query = query.where(or_(instances.c.created_at < at,
                                    (instances.c.created_at == at)
                                    & (instances.c.instance_id < after_id)))
        query = query.order_by(instances.c.created_at.desc(),
                               instances.c.instance_id.desc()).limit(limit)
        with self._read() as conn:
            return [InstanceRecord.from_row(row) for row in conn.execute(query).mappings()]

    def count_matching_by_status(self, *, name: str | None = None,
                                 created_from: datetime | None = None,
                                 created_to: datetime | None = None,
                                 id_contains: str | None = None) -> dict[str, int]:
        """How many instances matching the filters (as `search_instances` reads them) have each
        status; statuses with none are left out."""
        query = (select(instances.c.status, func.count())
                 .where(*_instance_filters(None, name, created_from, created_to, id_contains))
                 .group_by(instances.c.status))
        with self._read() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    def children_of(self, instance_id: str, limit: int = 100) -> list[InstanceRecord]:
        """The instances whose parent is ``instance_id`` (sub-orchestrations), oldest first."""
        query = (select(instances).where(instances.c.parent_instance_id == instance_id)
                 .order_by(instances.c.created_at, instances.c.instance_id).limit(limit))
        with self._read() as conn:
            return [InstanceRecord.from_row(row) for row in conn.execute(query).mappings()]

    def inbox_size(self, instance_id: str) -> int:
        """How many events wait in the instance's inbox (0 for an unknown id)."""
        with self._read() as conn:
            count = conn.execute(select(func.count()).select_from(inbox)
                                 .where(inbox.c.instance_id == instance_id)).scalar_one()
        return int(count)

    def instances_with_inbox(self, older_than: datetime, limit: int = 100, *,
                             skip_versions: Sequence[str | None] = (),
                             only_names: Sequence[str] | None = None,
                             limited: Sequence[str] = ()) -> list[str]:
        """Ids of existing instances with inbox rows created before ``older_than``, the longest
        waiting first (the sweeper wakes them up), leaving out instances of ``skip_versions``,
        instances of orchestrators not in ``only_names`` (when given) and those whose wake-up was claimed since ``older_than`` (it is on its way: waking them
        again would only queue another one behind it)."""
        recent_claim = exists().where(wakeups.c.instance_id == inbox.c.instance_id,
                                      wakeups.c.created_at >= to_db_time(older_than))
        query = (select(inbox.c.instance_id)
                 .join(instances, instances.c.instance_id == inbox.c.instance_id)
                 .where(inbox.c.created_at < to_db_time(older_than), ~recent_claim,
                        # a delayed start is not stranded: its start timer wakes it
                        or_(instances.c.start_at.is_(None),
                            instances.c.start_at <= to_db_time(older_than),
                            instances.c.status != OrchestrationStatus.PENDING.value)))
        named = [v for v in skip_versions if v is not None]
        if named:
            query = query.where(or_(instances.c.version.is_(None),
                                    instances.c.version.not_in(named)))
        if None in skip_versions:
            query = query.where(instances.c.version.is_not(None))
        if only_names is not None:
            query = query.where(instances.c.name.in_(list(only_names)))
        if limited:  # waiting for a slot is not stranded (see `stalled_waiting`)
            query = query.where(or_(instances.c.name.not_in(list(limited)),
                                    instances.c.history_len > 0,
                                    instances.c.status != OrchestrationStatus.PENDING.value))
        query = query.group_by(inbox.c.instance_id).order_by(func.min(inbox.c.id)).limit(limit)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def stalled_waiting(self, name: str, limit: int, at: datetime,
                        older_than: datetime) -> list[str]:
        """The oldest instance of ``name`` waiting for a slot of its concurrency ``limit``
        since before ``older_than``, if a slot is free (store/limits.py), else nothing."""
        with self._read() as conn:
            if limits.holding(conn, name) >= limit:
                return []
            return limits.waiting(conn, name, at, 1, older_than)

    def inbox_versions(self, older_than: datetime) -> list[str | None]:
        """The distinct versions of instances with inbox rows created before ``older_than``."""
        query = (select(instances.c.version).distinct()
                 .join(inbox, inbox.c.instance_id == instances.c.instance_id)
                 .where(inbox.c.created_at < to_db_time(older_than)))
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def running_instances(self, limit: int = 100,
                          after_id: str | None = None) -> list[InstanceRecord]:
        """Instances not yet finished, ordered by id, after ``after_id`` (for recovery)."""
        query = select(instances).where(instances.c.status.not_in(_TERMINAL))
        if after_id is not None:
            query = query.where(instances.c.instance_id > after_id)
        query = query.order_by(instances.c.instance_id).limit(limit)
        with self._read() as conn:
            return [InstanceRecord.from_row(row) for row in conn.execute(query).mappings()]

    def purge(self, instance_id: str, recursive: bool = True) -> int:
        """Delete a finished instance (with its history, inbox, timers and outbox) and, if
        ``recursive``, its finished descendants; return how many instances were deleted.

        Raises `OrchestrationNotFoundError` for an unknown id, `OrchestrationStateError` when
        the instance has not finished. Descendants still running are kept, with their subtree.
        """
        with self._write() as conn:
            status = conn.execute(self._locking(select(instances.c.status).where(
                instances.c.instance_id == instance_id))).scalar()
            if status is None:
                raise _not_found(instance_id)
            if status not in _TERMINAL:
                raise OrchestrationStateError(
                    f"instance {instance_id!r} is {status}; only COMPLETED, FAILED or "
                    "TERMINATED instances can be purged: wait for it or terminate it first")
            ids, frontier = [instance_id], [instance_id]
            seen = {instance_id}
            while recursive and frontier:
                children: list[str] = []
                for part in chunks(frontier):
                    query = select(instances.c.instance_id, instances.c.status).where(
                        instances.c.parent_instance_id.in_(part))
                    for child, child_status in conn.execute(self._locking(query)):
                        if child_status in _TERMINAL and child not in seen:
                            seen.add(child)
                            children.append(child)
                ids.extend(children)
                frontier = children
            delete_ended(conn, self.dialect, ids)
        return len(ids)

    def purge_ended(self, *, statuses: Sequence[str] | None = None,
                    created_from: datetime | None = None, created_to: datetime | None = None,
                    ended_before: datetime | None = None, recursive: bool = False,
                    limit: int = BATCH) -> int:
        """Delete at most ``limit`` ended instances (of ``statuses``: end statuses only)
        created in [created_from, created_to] and ended before ``ended_before`` (with their
        ended descendants if ``recursive``), in one short transaction; return how many were
        deleted (0: none is left). See `celery_durable.store.retention`."""
        wanted = ended_statuses(statuses)
        with self._write() as conn:
            ids = ended_batch(conn, self.dialect, statuses=wanted, created_from=created_from,
                              created_to=created_to, ended_before=ended_before, limit=limit)
            if recursive and ids:
                ids += ended_descendants(conn, self.dialect, ids)
            return delete_ended(conn, self.dialect, ids) if ids else 0

    def forget_settled_redispatches(self, limit: int = BATCH) -> int:
        """Delete re-dispatch records whose task completed or whose execution is over."""
        with self._read() as conn:
            keys = settled_redispatches(conn, limit)
        if keys:
            with self._write() as conn:
                delete_redispatches(conn, keys)
        return len(keys)

    def metrics(self, at: datetime | None = None) -> StoreMetrics:
        """What the Prometheus metrics read from the store (see `celery_durable.store.metrics`:
        three indexed statements)."""
        with self._read() as conn:
            return read_metrics(conn, at or now())

    def rewind(self, instance_id: str, reason: str | None, at: datetime,
               messages_for: MessagesFor) -> RewindOutcome:
        """Rewind a FAILED instance and its failed sub-orchestrations (see store/rewind.py)."""
        with self._write() as conn:
            return rewind_instance(conn, self.dialect, instance_id, reason, at, messages_for)

    def forget_wakeups(self, instance_ids: Sequence[str]) -> None:
        """Release the wake-up claims of these instances (`recover`: the broker may have lost
        their messages; a claim whose wake-up does arrive only costs one more wake-up)."""
        if instance_ids:
            with self._write() as conn:
                delete_instance_rows(conn, list(instance_ids), (wakeups,))

    # -- outbox ----------------------------------------------------------------------------------

    def pending_outbox(self, older_than: datetime,
                       limit: int = 100) -> list[tuple[int, str, dict[str, Any]]]:
        """Outbox messages written before ``older_than`` and not yet deleted, oldest first:
        ``(id, instance_id, message)``."""
        query = (select(outbox.c.id, outbox.c.instance_id, outbox.c.message)
                 .where(outbox.c.created_at < to_db_time(older_than))
                 .order_by(outbox.c.id).limit(limit))
        with self._read() as conn:
            return [(int(i), iid, loads(message)) for i, iid, message in conn.execute(query)]

    def acknowledge_outbox(self, ids: Sequence[int]) -> None:
        """Mark outbox messages published: this process deletes them with its next episode's
        commit, or within a second in a transaction of their own (see `OutboxAcks`)."""
        self.outbox_acks.add(ids)

    def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete published outbox messages now."""
        if not ids:
            return
        with self._write() as conn:
            for part in chunks(list(ids)):
                conn.execute(delete(outbox).where(outbox.c.id.in_(part)))

    # -- timers ----------------------------------------------------------------------------------

    def due_timers(self, until: datetime, limit: int = 100) -> list[TimerRow]:
        """Timers due by ``until`` and not dispatched yet, earliest first."""
        query = (select(timers)
                 .where(timers.c.fire_at <= to_db_time(until), timers.c.dispatched_at.is_(None))
                 .order_by(timers.c.fire_at).limit(limit))
        with self._read() as conn:
            return [TimerRow.from_row(row) for row in conn.execute(query).mappings()]

    def mark_timers_dispatched(self, keys: Sequence[TimerKey], at: datetime) -> list[TimerKey]:
        """Mark timers dispatched at ``at``; return the keys this call marked (those not marked
        before, in the given order): a timer is dispatched by one caller only."""
        wanted = list(dict.fromkeys((str(i), str(e), int(t)) for i, e, t in keys))
        key = tuple_(timers.c.instance_id, timers.c.execution_id, timers.c.task_id)
        marked: set[TimerKey] = set()
        with self._write() as conn:
            for part in chunks(wanted):
                query = select(timers.c.instance_id, timers.c.execution_id, timers.c.task_id) \
                    .where(key.in_(part), timers.c.dispatched_at.is_(None))
                found = [(i, e, t) for i, e, t in conn.execute(self._locking(query, True))]
                if found:
                    conn.execute(update(timers).where(key.in_(found))
                                 .values(dispatched_at=to_db_time(at)))
                    marked.update(found)
        return [k for k in wanted if k in marked]

    # -- overdue tasks (see store/overdue.py) ---------------------------------------------------

    def overdue_tasks(self, older_than: datetime, now: datetime,
                      limit: int = 100) -> list[OverdueTask]:
        """Activities scheduled, and timers due, before ``older_than`` with no completion, that
        no sweeper has claimed until after ``now``; the longest waiting first."""
        with self._read() as conn:
            return find_overdue(conn, older_than, now, limit)

    def completion_recorded(self, instance_id: str, execution_id: str, task_id: int) -> bool:
        """Whether the completion of activity ``task_id`` is in history or waits in the inbox."""
        with self._read() as conn:
            return completion_recorded(conn, instance_id, execution_id, task_id)

    def claim_overdue(self, tasks: Sequence[OverdueTask], now: datetime,
                      bound: timedelta) -> list[OverdueTask]:
        """Claim overdue tasks for a check now (none is checked again before ``now + bound``);
        return those this call claimed: of several sweepers, one checks each task."""
        if not tasks:
            return []
        with self._write() as conn:
            return claim_overdue(conn, self.dialect, tasks, now, bound)

    def mark_redispatched(self, tasks: Sequence[OverdueTask], now: datetime,
                          bound: timedelta) -> None:
        """Record that claimed overdue tasks were re-dispatched (their next check backs off)."""
        if tasks:
            with self._write() as conn:
                mark_redispatched(conn, tasks, now, bound)
