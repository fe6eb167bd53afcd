"""The entities' table family: each entity's state and lock (``durable_entities``), its inbox
rows (in ``durable_inbox``, under its ``@name@key`` id) and the timers of delayed signals (in
``durable_timers``, one execution id per signal).

`EntityStore` is what `Store.entities` gives: an entity's episode (lock, read its inbox, commit
state + results + outbox in one transaction), deliveries, queries and the clean-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, select, update

from celery_durable.engine.entity_messages import EntityRequest
from celery_durable.engine.status import TERMINAL_STATUSES
from celery_durable.payload import dumps, loads
from celery_durable.store.records import (
    InboxItem,
    InboxRow,
    NewInstance,
    from_db_time,
    now,
    to_db_time,
)
from celery_durable.store.schema import entities, inbox, instances, outbox, timers, wakeups
from celery_durable.store.writes import (
    chunks,
    claim_wakeup,
    create_instances,
    inbox_rows,
    insert_ignore,
    insert_inbox,
)

if TYPE_CHECKING:
    from celery_durable.store.store import Store

#: inbox dedup keys of delayed signals start with this (their timer's execution id follows)
DELAYED = "delayed:"
_TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)


@dataclass(frozen=True)
class EntityRecord:
    """One entity row (``backlog``: how many requests wait in its inbox, when counted)."""

    instance_id: str
    name: str
    state: Any
    locked_by: str | None
    lock_execution: str | None
    lock_task_id: int | None
    created_at: datetime
    updated_at: datetime
    backlog: int = 0

    @property
    def lock(self) -> tuple[str | None, str | None, int | None] | None:
        if self.locked_by is None:
            return None
        return (self.locked_by, self.lock_execution, self.lock_task_id)

    @classmethod
    def from_row(cls, m: Any, backlog: int = 0) -> EntityRecord:
        return cls(m["instance_id"], m["name"],
                   None if m["state"] is None else loads(m["state"]), m["locked_by"],
                   m["lock_execution"], m["lock_task_id"], from_db_time(m["created_at"]),
                   from_db_time(m["updated_at"]), backlog)


@dataclass(frozen=True)
class DelayedTimer:
    """The timer of a delayed signal: ``timer`` is its execution id (task id 0)."""

    entity_id: str
    timer: str
    fire_at: datetime
    dispatched_at: datetime | None


@dataclass
class EntityCommit:
    """What an entity's episode writes: its state and lock, the inbox rows it consumed, items
    for other inboxes (callers' results, forwarded locks, signals), orchestrations started,
    outbox messages, timers of delayed signals sent and of those applied."""

    state: Any
    lock: tuple[str | None, str | None, int | None] | None
    consumed_inbox_ids: list[int] = field(default_factory=list)
    notify: list[tuple[str, InboxItem]] = field(default_factory=list)
    starts: list[tuple[NewInstance, list[Any]]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    new_timers: list[DelayedTimer] = field(default_factory=list)
    done_timers: list[str] = field(default_factory=list)


class EntityEpisode:
    """The locked entity and its waiting requests (arrival order); `commit` writes the outcome."""

    def __init__(self, conn: Connection, dialect: str, record: EntityRecord,
                 requests: list[EntityRequest], outbox_acks: Sequence[int] = ()) -> None:
        self._conn, self._dialect = conn, dialect
        self._acks = list(outbox_acks)
        self.record = record
        self.requests = requests
        self.committed = False

    def commit(self, outcome: EntityCommit) -> list[int]:
        conn, eid, at = self._conn, self.record.instance_id, now()
        lock = outcome.lock or (None, None, None)
        conn.execute(update(entities).where(entities.c.instance_id == eid).values(
            state=None if outcome.state is None else dumps(outcome.state),
            locked_by=lock[0], lock_execution=lock[1], lock_task_id=lock[2],
            updated_at=to_db_time(at)))
        for part in chunks(outcome.consumed_inbox_ids):
            conn.execute(delete(inbox).where(inbox.c.instance_id == eid, inbox.c.id.in_(part)))
        for part in chunks(self._acks):
            conn.execute(delete(outbox).where(outbox.c.id.in_(part)))
        for done in chunks(outcome.done_timers):
            conn.execute(delete(timers).where(timers.c.instance_id == eid,
                                              timers.c.execution_id.in_(done)))
        if outcome.starts:
            create_instances(conn, self._dialect, outcome.starts, at)
        insert_inbox(conn, self._dialect, inbox_rows(outcome.notify, at))
        insert_timers(conn, outcome.new_timers)
        ids = []
        for message in outcome.outbox:  # few per episode: one insert each keeps their order
            key = conn.execute(insert(outbox), {"instance_id": eid, "message": dumps(message),
                                                "created_at": to_db_time(at)}
                               ).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        self.committed = True
        return ids


def insert_timers(conn: Connection, rows: Sequence[DelayedTimer]) -> None:
    if rows:
        conn.execute(insert(timers), [
            {"instance_id": t.entity_id, "execution_id": t.timer, "task_id": 0,
             "fire_at": to_db_time(t.fire_at),
             "dispatched_at": None if t.dispatched_at is None else to_db_time(t.dispatched_at)}
            for t in rows])


class EntityStore:
    """Entities in a `Store` (each method one transaction, as the store's own)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def episode(self, entity_id: str, name: str) -> Iterator[EntityEpisode]:
        """Lock the entity (created on first use; waits for another holder) and release its
        wake-up claim, then read its inbox: ``with store.entities.episode(eid, name) as ep``.
        Leaving the block without `EntityEpisode.commit` changes nothing."""
        store = self._store
        store._no_nested_write("an entity episode")
        acks = store.outbox_acks.take()  # published outbox rows: deleted by this commit
        episode: EntityEpisode | None = None
        try:
            with self._locked(entity_id, name, acks) as episode:
                yield episode
        finally:
            if episode is None or not episode.committed:
                store.outbox_acks.restore(acks)

    @contextmanager
    def _locked(self, entity_id: str, name: str, acks: list[int]) -> Iterator[EntityEpisode]:
        store = self._store
        dialect = store.dialect
        with store._ready().begin() as conn:
            row = _lock(conn, dialect, entity_id)
            if row is None:
                values = {"instance_id": entity_id, "name": name, "created_at": to_db_time(now()),
                          "updated_at": to_db_time(now())}
                conn.execute(insert_ignore(dialect, entities.name), values)
                row = _lock(conn, dialect, entity_id)
                assert row is not None
            conn.execute(delete(wakeups).where(wakeups.c.instance_id == entity_id))
            query = (select(inbox.c.id, inbox.c.dedup_key, inbox.c.execution_id, inbox.c.event)
                     .where(inbox.c.instance_id == entity_id).order_by(inbox.c.id))
            requests = []
            for m in conn.execute(query).mappings():
                inbox_row = InboxRow.from_row(m)
                requests.append(EntityRequest.from_event(inbox_row.event, inbox_row.id,
                                                         inbox_row.dedup_key))
            yield EntityEpisode(conn, dialect, EntityRecord.from_row(row), requests, acks)

    def deliver(self, entity_id: str, items: Sequence[InboxItem],
                delayed: Sequence[DelayedTimer] = ()) -> bool:
        """Add requests to an entity's inbox (and the timers of delayed ones); True when the
        caller must send the entity's wake-up (False: one is on its way)."""
        rows = inbox_rows(((entity_id, item) for item in items), now())
        with self._store._write() as conn:
            insert_inbox(conn, self._store.dialect, rows)
            insert_timers(conn, delayed)
            return claim_wakeup(conn, self._store.dialect, entity_id)

    def get(self, entity_id: str, include_state: bool = True) -> EntityRecord | None:
        with self._store._read() as conn:
            row = conn.execute(select(entities).where(entities.c.instance_id == entity_id)
                               ).mappings().first()
            if row is None:
                return None
            backlog = conn.execute(select(func.count()).select_from(inbox)
                                   .where(inbox.c.instance_id == entity_id)).scalar_one()
        record = EntityRecord.from_row(row, int(backlog))
        if not include_state:
            record = EntityRecord(**{**record.__dict__, "state": None})
        return record

    def query(self, *, name: str | None = None, key_prefix: str | None = None,
              limit: int = 100, after: str | None = None,
              include_state: bool = True) -> list[EntityRecord]:
        """Entities with state or a lock, ordered by id, after id ``after`` (keyset paging)."""
        query = select(entities).where((entities.c.state.is_not(None))
                                       | (entities.c.locked_by.is_not(None)))
        if name is not None:
            prefix = f"@{name.lower()}@{key_prefix or ''}"
            query = query.where(entities.c.instance_id.startswith(prefix, autoescape=True))
        elif key_prefix:
            raise ValueError("key_prefix needs name: keys are per entity name")
        if after is not None:
            query = query.where(entities.c.instance_id > after)
        query = query.order_by(entities.c.instance_id).limit(limit)
        with self._store._read() as conn:
            rows = list(conn.execute(query).mappings())
            backlogs: dict[str, int] = {}
            ids = [row["instance_id"] for row in rows]
            for part in chunks(ids):
                counted = (select(inbox.c.instance_id, func.count())
                           .where(inbox.c.instance_id.in_(part)).group_by(inbox.c.instance_id))
                backlogs.update((iid, int(n)) for iid, n in conn.execute(counted))
        records = [EntityRecord.from_row(row, backlogs.get(row["instance_id"], 0))
                   for row in rows]
        if not include_state:
            records = [EntityRecord(**{**r.__dict__, "state": None}) for r in records]
        return records

    def with_inbox(self, older_than: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """``(id, name)`` of entities whose inbox has requests waiting since before
        ``older_than`` with no wake-up claimed since then (the sweeper wakes them); delayed
        signals whose timer is not due by then are left to their timer."""
        cutoff = to_db_time(older_than)
        recent_claim = exists().where(wakeups.c.instance_id == inbox.c.instance_id,
                                      wakeups.c.created_at >= cutoff)
        timer_pending = exists().where(
            timers.c.instance_id == inbox.c.instance_id,
            timers.c.execution_id == func.substr(inbox.c.dedup_key, len(DELAYED) + 1),
            timers.c.fire_at >= cutoff)
        query = (select(inbox.c.instance_id)
                 .where(inbox.c.instance_id.startswith("@"), inbox.c.created_at < cutoff,
                        ~recent_claim,
                        ~and_(inbox.c.dedup_key.startswith(DELAYED), timer_pending))
                 .group_by(inbox.c.instance_id).order_by(func.min(inbox.c.id)).limit(limit))
        with self._store._read() as conn:
            ids = list(conn.execute(query).scalars())
        return [(iid, iid.split("@")[1]) for iid in ids]

    def clean(self) -> tuple[int, list[str]]:
        """Delete entities without state, lock or waiting requests; release the locks held by
        orchestrations that have ended or no longer exist. Returns (removed, released ids)."""
        holder_live = exists().where(instances.c.instance_id == entities.c.locked_by,
                                     instances.c.status.not_in(_TERMINAL))
        with self._store._write() as conn:
            orphaned = list(conn.execute(
                select(entities.c.instance_id)
                .where(entities.c.locked_by.is_not(None), ~holder_live)).scalars())
            for part in chunks(orphaned):
                conn.execute(update(entities).where(entities.c.instance_id.in_(part),
                                                    entities.c.locked_by.is_not(None),
                                                    ~holder_live)
                             .values(locked_by=None, lock_execution=None, lock_task_id=None))
            waiting = exists().where(inbox.c.instance_id == entities.c.instance_id)
            removed = conn.execute(delete(entities).where(
                entities.c.state.is_(None), entities.c.locked_by.is_(None), ~waiting)).rowcount
        return int(removed or 0), orphaned


def _lock(conn: Connection, dialect: str, entity_id: str) -> Any:
    query = select(entities).where(entities.c.instance_id == entity_id)
    if dialect != "sqlite":  # SQLite: the BEGIN IMMEDIATE transaction is the lock
        query = query.with_for_update()
    return conn.execute(query).mappings().first()
