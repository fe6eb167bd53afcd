"""Overdue tasks: activities scheduled, and timers due, longer ago than a bound, not completed.

A worker killed while it holds a task's message strands the task: Redis keeps the message
unacknowledged until its ``visibility_timeout`` (1 hour by default), kombu's filesystem transport
loses it. The sweeper finds such tasks here and re-dispatches those no live worker holds
(`celery_durable.runtime.redispatch`).

`find_overdue` is one query driven by the instances that have not ended (the status index),
through their current execution's history (primary key), the task's timer row and redispatch
claim (primary keys); a completion is looked for in the history (index ``ix_durable_history_task``)
and in the inbox (its unique dedup key). Its cost grows with the history of the instances that
have not ended, not with finished ones. `claim_overdue` is a conditional write, so that of all the sweepers
one checks a task, at most once per bound; every re-dispatch doubles the wait before the next one
(a message that merely waits in a long queue is not copied once per bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.payload import loads
from celery_durable.store.records import (
    TASK_KEY,
    TIMER_KEY,
    completion_key,
    from_db_time,
    to_db_time,
)
from celery_durable.store.schema import history, inbox, instances, redispatches, timers
from celery_durable.store.writes import insert_ignore

TaskKey = tuple[str, str, int]
#: the wait before checking a re-dispatched task again doubles up to bound * 2 ** MAX_DOUBLINGS
MAX_DOUBLINGS = 7
_LIVE = [OrchestrationStatus.RUNNING.value, OrchestrationStatus.SUSPENDED.value]
_DONE = [h.TASK_COMPLETED, h.TASK_FAILED, h.TIMER_FIRED]


@dataclass(frozen=True)
class OverdueTask:
    """A scheduled activity (``TaskScheduled``) or timer (``TimerCreated``) with no completion."""

    instance_id: str
    execution_id: str
    task_id: int
    #: ``TaskScheduled`` or ``TimerCreated``
    kind: str
    #: the activity's name (None for a timer)
    name: str | None
    #: the scheduling event's data: ``{input, attempt}`` or ``{fire_at}``
    data: Any
    #: the instance's orchestrator
    orchestrator: str
    #: when a sweeper may check it again (None: never checked)
    next_check_at: datetime | None
    #: how often it was re-dispatched
    redispatched: int

    @property
    def key(self) -> TaskKey:
        return (self.instance_id, self.execution_id, self.task_id)

    @property
    def is_timer(self) -> bool:
        return self.kind == h.TIMER_CREATED


def _same_task(table: Any) -> Any:
    return and_(table.c.instance_id == history.c.instance_id,
                table.c.execution_id == history.c.execution_id,
                table.c.task_id == history.c.task_id)


def find_overdue(conn: Connection, older_than: datetime, now: datetime,
                 limit: int) -> list[OverdueTask]:
    """Activities scheduled before ``older_than``, and timers due before it (their message
    sent), without a completion in history or inbox, that no sweeper claimed until after
    ``now``; the longest waiting first."""
    done = history.alias("done")
    cutoff, at = to_db_time(older_than), to_db_time(now)
    # the completion's inbox dedup key (records.completion_key), in SQL
    dedup_key = (case((history.c.kind == h.TASK_SCHEDULED, literal(f"{TASK_KEY}:")),
                      else_=literal(f"{TIMER_KEY}:"))
                 + history.c.execution_id + literal(":") + cast(history.c.task_id, String))
    # The timer, claim and inbox rows are probed per candidate through their primary or unique
    # keys by correlated subqueries, which PostgreSQL cannot turn into joins: as joins, its
    # estimate of the candidates (one row, for thousands) chose a scan of the whole table per
    # candidate (10 s with 20,000 running instances in a store of a million).
    timer_sent = exists().where(_same_task(timers), timers.c.fire_at < cutoff,
                                timers.c.dispatched_at.is_not(None))
    next_check = select(redispatches.c.next_check_at).where(
        _same_task(redispatches)).scalar_subquery()
    redispatched = select(redispatches.c.redispatched).where(
        _same_task(redispatches)).scalar_subquery()
    in_inbox = select(func.count()).select_from(inbox).where(
        inbox.c.instance_id == history.c.instance_id,
        inbox.c.dedup_key == dedup_key).scalar_subquery()
    query = (
        select(history.c.instance_id, history.c.execution_id, history.c.task_id,
               history.c.kind, history.c.name, history.c.data,
               instances.c.name.label("orchestrator"), next_check.label("next_check_at"),
               redispatched.label("redispatched"))
        .select_from(
            instances.join(history, and_(history.c.instance_id == instances.c.instance_id,
                                         history.c.execution_id == instances.c.execution_id)))
        .where(instances.c.status.in_(_LIVE),
               history.c.kind.in_([h.TASK_SCHEDULED, h.TIMER_CREATED]),
               history.c.timestamp < cutoff,
               or_(history.c.kind == h.TASK_SCHEDULED, timer_sent),
               or_(next_check.is_(None), next_check <= at),
               ~exists().where(done.c.instance_id == history.c.instance_id,
                               done.c.execution_id == history.c.execution_id,
                               done.c.task_id == history.c.task_id, done.c.kind.in_(_DONE)),
               in_inbox == 0)
        .order_by(history.c.timestamp).limit(limit))
    return [OverdueTask(row.instance_id, row.execution_id, int(row.task_id), row.kind, row.name,
                        loads(row.data), row.orchestrator,
                        None if row.next_check_at is None else from_db_time(row.next_check_at),
                        int(row.redispatched or 0))
            for row in conn.execute(query)]


def completion_recorded(conn: Connection, instance_id: str, execution_id: str,
                        task_id: int) -> bool:
    """Whether an activity's completion is in the instance's history or inbox (one query)."""
    in_history = exists().where(history.c.instance_id == instance_id,
                                history.c.execution_id == execution_id,
                                history.c.task_id == task_id,
                                history.c.kind.in_([h.TASK_COMPLETED, h.TASK_FAILED]))
    in_inbox = exists().where(inbox.c.instance_id == instance_id,
                              inbox.c.dedup_key == completion_key(TASK_KEY, execution_id,
                                                                 task_id))
    return bool(conn.execute(select(or_(in_history, in_inbox))).scalar())


def _key_is(task: OverdueTask) -> Any:
    return and_(redispatches.c.instance_id == task.instance_id,
                redispatches.c.execution_id == task.execution_id,
                redispatches.c.task_id == task.task_id)


def claim_overdue(conn: Connection, dialect: str, tasks: Sequence[OverdueTask], now: datetime,
                  bound: timedelta) -> list[OverdueTask]:
    """Claim ``tasks`` (as `find_overdue` returned them) for a check now: no other sweeper
    checks them before ``now + bound``. Returns those this call claimed."""
    next_at = to_db_time(now + bound)
    claimed = []
    for task in tasks:
        if task.next_check_at is None:
            row = {"instance_id": task.instance_id, "execution_id": task.execution_id,
                   "task_id": task.task_id, "next_check_at": next_at, "redispatched": 0}
            if dialect == "mysql":
                won = bool(conn.execute(insert_ignore(dialect, redispatches.name), row).rowcount)
            else:
                won = conn.execute(insert_ignore(dialect, redispatches.name, "task_id"),
                                   row).first() is not None
        else:
            seen = to_db_time(task.next_check_at)
            won = conn.execute(update(redispatches)
                               .where(_key_is(task), redispatches.c.next_check_at == seen)
                               .values(next_check_at=next_at)).rowcount == 1
        if won:
            claimed.append(task)
    return claimed


def mark_redispatched(conn: Connection, tasks: Sequence[OverdueTask], now: datetime,
                      bound: timedelta) -> None:
    """Count a re-dispatch of each of ``tasks`` (claimed) and put its next check off: ``bound``
    times 2 to the power of its re-dispatches (at most ``MAX_DOUBLINGS``)."""
    for task in tasks:
        count = task.redispatched + 1
        wait = bound * 2 ** min(count, MAX_DOUBLINGS)
        conn.execute(update(redispatches).where(_key_is(task))
                     .values(redispatched=count, next_check_at=to_db_time(now + wait)))
