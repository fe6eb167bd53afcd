"""What the metrics read from the store: three statements, each through an index, whatever the
number of instances.

1. Instances per (orchestrator, status): an index-only count over
   ``ix_durable_instances_name_status_created``.
2. Instances purged per (orchestrator, end status): the small ``durable_purged`` table.
3. One row of scalar subqueries, each a short walk of an index:
   - the oldest PENDING instance whose start is due (``ix_durable_instances_status_created``,
     stopping at the first one due);
   - the oldest RUNNING instance that waits on nothing the store can see coming: no timer of its
     current execution still to fire, no event in its inbox, nothing re-dispatched; it waits on an
     activity, a sub-orchestration or an external event (RUNNING instances: the status index);
   - the inbox's rows and the oldest of them (events not yet consumed by an episode);
   - timers due and not fired (``ix_durable_timers_fire_at`` up to now; a timer row is kept until
     its instance's execution ends, so each due one is checked against its history by
     ``ix_durable_history_task``) and the earliest due time among them;
   - ``durable_redispatches`` rows (activities and timers the sweeper found overdue and re-sent,
     not completed yet);
   - outbox rows and the oldest of them (messages committed and not yet published).
Their cost grows with the instances that are running, the inbox, the due timers and the
outbox, never with the instances that have ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, and_, cast, exists, func, literal, or_, select

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.store.records import START_TIMER_ID, TIMER_KEY, from_db_time, to_db_time
from celery_durable.store.retention import purged_counts
from celery_durable.store.schema import history, inbox, instances, outbox, redispatches, timers

_PENDING = OrchestrationStatus.PENDING.value
_RUNNING = OrchestrationStatus.RUNNING.value


@dataclass(frozen=True)
class StoreMetrics:
    """A snapshot of the store for the metrics (datetimes aware UTC, None when there is none)."""

    #: instances stored, per (orchestrator, status)
    instances: dict[tuple[str, str], int]
    #: instances purged so far, per (orchestrator, end status)
    purged: dict[tuple[str, str], int]
    #: creation time of the oldest PENDING instance whose start is due
    oldest_pending: datetime | None
    #: last update of the oldest RUNNING instance with no timer to fire and an empty inbox
    oldest_idle_running: datetime | None
    inbox_rows: int
    oldest_inbox_row: datetime | None
    timers_due: int
    #: due time of the earliest due timer not fired
    earliest_due_timer: datetime | None
    redispatch_waiting: int
    outbox_rows: int
    oldest_outbox_row: datetime | None


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _scalars(at: datetime) -> Any:
    """The one-row query of ages and sizes (see the module's docstring)."""
    due_start = or_(instances.c.start_at.is_(None), instances.c.start_at <= at)
    oldest_pending = (select(func.min(instances.c.created_at))
                      .where(instances.c.status == _PENDING, due_start).scalar_subquery())
    has_timer = exists().where(timers.c.instance_id == instances.c.instance_id,
                               timers.c.execution_id == instances.c.execution_id,
                               timers.c.fire_at > at)
    has_inbox = exists().where(inbox.c.instance_id == instances.c.instance_id)
    redispatched = exists().where(redispatches.c.instance_id == instances.c.instance_id)
    oldest_idle = (select(func.min(instances.c.updated_at))
                   .where(instances.c.status == _RUNNING, ~has_timer, ~has_inbox, ~redispatched)
                   .scalar_subquery())
    fired = exists().where(history.c.instance_id == timers.c.instance_id,
                           history.c.execution_id == timers.c.execution_id,
                           history.c.task_id == timers.c.task_id,
                           history.c.kind == h.TIMER_FIRED)
    dedup_key = (literal(f"{TIMER_KEY}:") + timers.c.execution_id + literal(":")
                 + cast(timers.c.task_id, String))
    delivered = exists().where(inbox.c.instance_id == timers.c.instance_id,
                               inbox.c.dedup_key == dedup_key)
    start_waits = exists().where(instances.c.instance_id == timers.c.instance_id,
                                 instances.c.status == _PENDING)
    not_fired = or_(and_(timers.c.task_id == START_TIMER_ID, start_waits),
                    and_(timers.c.task_id != START_TIMER_ID, ~fired, ~delivered))
    due = select(timers.c.fire_at).where(timers.c.fire_at <= at, not_fired).subquery()
    return select(
        oldest_pending.label("oldest_pending"),
        oldest_idle.label("oldest_idle"),
        select(func.count()).select_from(inbox).scalar_subquery().label("inbox_rows"),
        select(func.min(inbox.c.created_at)).scalar_subquery().label("oldest_inbox"),
        select(func.count()).select_from(due).scalar_subquery().label("timers_due"),
        select(func.min(due.c.fire_at)).scalar_subquery().label("earliest_due"),
        select(func.count()).select_from(redispatches).scalar_subquery().label("redispatch"),
        select(func.count()).select_from(outbox).scalar_subquery().label("outbox_rows"),
        select(func.min(outbox.c.created_at)).scalar_subquery().label("oldest_outbox"),
    )


def read_metrics(conn: Connection, now: datetime) -> StoreMetrics:
    """The store's metrics as of ``now`` (three statements on ``conn``)."""
    at = to_db_time(now)
    counts = {(name, status): int(n) for name, status, n in conn.execute(
        select(instances.c.name, instances.c.status, func.count())
        .group_by(instances.c.name, instances.c.status))}
    purged = purged_counts(conn)
    row = conn.execute(_scalars(at)).one()
    return StoreMetrics(
        instances=counts, purged=purged, oldest_pending=_opt(row.oldest_pending),
        oldest_idle_running=_opt(row.oldest_idle), inbox_rows=int(row.inbox_rows),
        oldest_inbox_row=_opt(row.oldest_inbox), timers_due=int(row.timers_due),
        earliest_due_timer=_opt(row.earliest_due), redispatch_waiting=int(row.redispatch),
        outbox_rows=int(row.outbox_rows), oldest_outbox_row=_opt(row.oldest_outbox))
