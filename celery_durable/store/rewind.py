"""Rewinding a failed instance in the store: one transaction applies `engine.rewind`'s plan.

The rewound history gets a new execution id: the kept events are written again under it,
followed by the ``ExecutionRewound`` record, and the failed execution's rows go. A new execution
id keeps everything keyed by execution apart: a late result of the failed run (its inbox dedup
key and Celery task id name the old execution) is dropped as stale, re-run work gets Celery task
ids of its own, and no worker's cached orchestrator state (valid for one execution and length)
can be mistaken for the rewound one. Sub-orchestrations still running, and failed ones rewound
with it, report to the new execution.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.rewind import RewindPlan, plan_rewind
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import OrchestrationNotFoundError, OrchestrationStateError
from celery_durable.payload import dumps
from celery_durable.store.records import (
    InboxItem,
    InstanceRecord,
    history_event,
    history_row,
    to_db_time,
)
from celery_durable.store.schema import history, instances, outbox, redispatches, timers
from celery_durable.store.writes import inbox_rows, insert_inbox

#: builds the broker messages of a rewound instance: (record, new execution id, reopened
#: scheduling events) -> messages (the re-run work and the instance's wake-up)
MessagesFor = Callable[[InstanceRecord, str, list[HistoryEvent]], list[dict[str, Any]]]


@dataclass
class RewindOutcome:
    """What a rewind wrote: the instances rewound (the asked one first) and its outbox."""

    rewound: list[str] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


def rewind_instance(conn: Connection, dialect: str, instance_id: str, reason: str | None,
                    at: datetime, messages_for: MessagesFor,
                    outcome: RewindOutcome | None = None,
                    parent_execution_id: str | None = None) -> RewindOutcome:
    """Rewind FAILED ``instance_id`` (and its failed sub-orchestrations) in the caller's
    transaction; `OrchestrationStateError` when it has not failed."""
    outcome = outcome or RewindOutcome()
    query = select(instances).where(instances.c.instance_id == instance_id)
    if dialect != "sqlite":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise OrchestrationNotFoundError(
            f"no orchestration instance has id {instance_id!r}; check the id (it may have been "
            "purged)")
    record = InstanceRecord.from_row(row)
    if record.status is not OrchestrationStatus.FAILED:
        what = "it" if not outcome.rewound else f"its sub-orchestration {instance_id!r}"
        raise OrchestrationStateError(
            f"cannot rewind orchestration {instance_id!r}: {what} is {record.status.value}, "
            "and only a FAILED instance can be rewound; restart_orchestration runs any ended "
            "instance again from the beginning")
    old = record.execution_id
    events = [history_event(r) for r in conn.execute(
        select(history).where(history.c.instance_id == instance_id,
                              history.c.execution_id == old).order_by(history.c.seq)).mappings()]
    try:
        plan = plan_rewind(events)
    except ValueError as exc:
        raise OrchestrationStateError(f"cannot rewind orchestration {instance_id!r}: {exc}") \
            from None
    new = uuid.uuid4().hex
    _write_history(conn, instance_id, old, new, plan, reason, at)
    refeed = [InboxItem(f"rewind:{new}:{i}", event, new) for i, event in enumerate(plan.refeed)]
    insert_inbox(conn, dialect, inbox_rows(((instance_id, item) for item in refeed), at))
    reopened_timers = [e for e in plan.reopened if e.kind == h.TIMER_CREATED]
    if reopened_timers:
        conn.execute(insert(timers), [
            {"instance_id": instance_id, "execution_id": new, "task_id": e.task_id,
             "fire_at": to_db_time(h.utc(datetime.fromisoformat(e.data["fire_at"]))),
             "dispatched_at": None} for e in reopened_timers])
    values: dict[str, Any] = {
        "execution_id": new, "status": OrchestrationStatus.RUNNING.value, "output": None,
        "failure": None, "completed_at": None, "history_len": len(plan.kept) + 1,
        "updated_at": to_db_time(at)}
    if parent_execution_id is not None:
        values["parent_execution_id"] = parent_execution_id
    conn.execute(update(instances).where(instances.c.instance_id == instance_id).values(values))
    # running sub-orchestrations report to the new execution
    conn.execute(update(instances).where(instances.c.parent_instance_id == instance_id,
                                         instances.c.parent_execution_id == old)
                 .values(parent_execution_id=new))
    outcome.rewound.append(instance_id)
    messages = messages_for(record, new, plan.reopened)
    if messages:
        created = to_db_time(at)
        for message in messages:
            key = conn.execute(insert(outbox), {"instance_id": instance_id,
                                                "message": dumps(message),
                                                "created_at": created}).inserted_primary_key
            assert key is not None
            outcome.outbox_ids.append(int(key[0]))
            outcome.messages.append(message)
    for child in plan.failed_children:
        rewind_instance(conn, dialect, child, reason, at, messages_for, outcome, new)
    return outcome


def _write_history(conn: Connection, instance_id: str, old: str, new: str, plan: RewindPlan,
                   reason: str | None, at: datetime) -> None:
    record = h.execution_rewound(at, reason, old, plan.removed, plan.events_removed) \
        .with_seq(len(plan.kept))
    rows = [history_row(instance_id, new, event) for event in [*plan.kept, record]]
    conn.execute(insert(history), rows)
    for table in (history, timers, redispatches):
        conn.execute(delete(table).where(table.c.instance_id == instance_id,
                                         table.c.execution_id == old))
