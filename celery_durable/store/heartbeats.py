"""Activity heartbeats (``ctx.heartbeat``): the last details an activity reported and when.

One row per (instance, execution, task id): a heartbeat overwrites it, so the next attempt of a
lost activity (re-dispatched with the same task id) reads what the previous one reported
(``ctx.last_heartbeat``). An activity declared with a ``heartbeat_timeout`` gets its row when it
starts, so that one that hangs before its first heartbeat is noticed too. The sweeper reads the
rows whose last beat is older than the timeouts (`stale_heartbeats`) and claims each one by
moving its ``beat_at`` (`claim_stale`): of several sweepers, one re-dispatches it, once per
timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, select, update

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.payload import dumps, loads
from celery_durable.store.records import TASK_KEY, completion_key, from_db_time, to_db_time
from celery_durable.store.schema import heartbeats, history, inbox, instances
from celery_durable.store.writes import insert_ignore

_LIVE = [OrchestrationStatus.RUNNING.value, OrchestrationStatus.SUSPENDED.value]
_UNSET = object()


@dataclass(frozen=True)
class StaleHeartbeat:
    """An activity whose last heartbeat (or start) is older than asked, not completed."""

    instance_id: str
    execution_id: str
    task_id: int
    #: the activity's name and its ``TaskScheduled`` data (``{input, attempt}``)
    name: str
    data: Any
    orchestrator: str
    beat_at: datetime


def _key(instance_id: str, execution_id: str, task_id: int) -> Any:
    return and_(heartbeats.c.instance_id == instance_id,
                heartbeats.c.execution_id == execution_id, heartbeats.c.task_id == task_id)


def beat(conn: Connection, dialect: str, instance_id: str, execution_id: str, task_id: int,
         at: datetime, details: Any = _UNSET) -> None:
    """Record a heartbeat at ``at``; with ``details`` (JSON), replace the details kept."""
    values: dict[str, Any] = {"beat_at": to_db_time(at)}
    if details is not _UNSET:
        values["details"] = dumps(details)
    changed = conn.execute(update(heartbeats).where(_key(instance_id, execution_id, task_id))
                           .values(**values)).rowcount
    if changed:
        return
    row = {"instance_id": instance_id, "execution_id": execution_id, "task_id": task_id,
           "details": values.get("details"), "beat_at": values["beat_at"]}
    inserted = conn.execute(insert_ignore(dialect, heartbeats.name), row).rowcount
    if not inserted:  # another process inserted it meanwhile
        conn.execute(update(heartbeats).where(_key(instance_id, execution_id, task_id))
                     .values(**values))


def last_details(conn: Connection, instance_id: str, execution_id: str, task_id: int) -> Any:
    """The details of the task's last heartbeat (None when it reported none)."""
    text = conn.execute(select(heartbeats.c.details)
                        .where(_key(instance_id, execution_id, task_id))).scalar()
    return None if text is None else loads(text)


def stale_heartbeats(conn: Connection, older_than: datetime, limit: int) -> list[StaleHeartbeat]:
    """Heartbeat rows of live instances' current executions last beaten before ``older_than``
    whose activity has no completion in history or inbox; the oldest first."""
    done = exists().where(history.c.instance_id == heartbeats.c.instance_id,
                          history.c.execution_id == heartbeats.c.execution_id,
                          history.c.task_id == heartbeats.c.task_id,
                          history.c.kind.in_([h.TASK_COMPLETED, h.TASK_FAILED]))
    scheduled = history.alias("scheduled")
    query = (select(heartbeats.c.instance_id, heartbeats.c.execution_id, heartbeats.c.task_id,
                    heartbeats.c.beat_at, scheduled.c.name, scheduled.c.data,
                    instances.c.name.label("orchestrator"))
             .select_from(heartbeats
                          .join(instances, and_(
                              instances.c.instance_id == heartbeats.c.instance_id,
                              instances.c.execution_id == heartbeats.c.execution_id))
                          .join(scheduled, and_(
                              scheduled.c.instance_id == heartbeats.c.instance_id,
                              scheduled.c.execution_id == heartbeats.c.execution_id,
                              scheduled.c.task_id == heartbeats.c.task_id,
                              scheduled.c.kind == h.TASK_SCHEDULED)))
             .where(instances.c.status.in_(_LIVE),
                    heartbeats.c.beat_at < to_db_time(older_than), ~done)
             .order_by(heartbeats.c.beat_at).limit(limit))
    found = []
    for row in conn.execute(query).mappings():
        key = completion_key(TASK_KEY, row["execution_id"], int(row["task_id"]))
        if conn.execute(select(inbox.c.id).where(inbox.c.instance_id == row["instance_id"],
                                                 inbox.c.dedup_key == key)).first():
            continue
        found.append(StaleHeartbeat(row["instance_id"], row["execution_id"],
                                    int(row["task_id"]), row["name"], loads(row["data"]),
                                    row["orchestrator"], from_db_time(row["beat_at"])))
    return found


def claim_stale(conn: Connection, stale: StaleHeartbeat, now: datetime) -> bool:
    """Move a stale row's ``beat_at`` to ``now`` if no other sweeper did: whether this call
    claimed it (its re-dispatch then waits a whole timeout before it can be stale again)."""
    return conn.execute(update(heartbeats)
                        .where(_key(stale.instance_id, stale.execution_id, stale.task_id),
                               heartbeats.c.beat_at == to_db_time(stale.beat_at))
                        .values(beat_at=to_db_time(now))).rowcount == 1


class Heartbeats:
    """The heartbeat rows through a `Store`'s connections (``store.heartbeats``)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def beat(self, instance_id: str, execution_id: str, task_id: int, at: datetime,
             details: Any = _UNSET) -> None:
        """Record a heartbeat (with ``details``: replacing the details kept)."""
        with self._store._write() as conn:
            beat(conn, self._store.dialect, instance_id, execution_id, task_id, at, details)

    def last_details(self, instance_id: str, execution_id: str, task_id: int) -> Any:
        with self._store._read() as conn:
            return last_details(conn, instance_id, execution_id, task_id)

    def stale(self, older_than: datetime, limit: int = 100) -> list[StaleHeartbeat]:
        with self._store._read() as conn:
            return stale_heartbeats(conn, older_than, limit)

    def claim(self, stale: StaleHeartbeat, now: datetime) -> bool:
        with self._store._write() as conn:
            return claim_stale(conn, stale, now)
