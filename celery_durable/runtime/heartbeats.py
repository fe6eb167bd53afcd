"""Activity heartbeats: ``ctx.heartbeat(details)``, ``ctx.last_heartbeat``, and the sweep step
that re-dispatches an activity whose heartbeats stopped for longer than its
``heartbeat_timeout`` (``@activity(heartbeat_timeout=timedelta(...))``).

A lost activity is sent again with its Celery task id (at-least-once: should the silent run
finish after all, the inbox keeps one result); the new run reads the details the lost one last
reported. Unlike the overdue-task re-dispatch (`celery_durable.runtime.redispatch`), a run that
a worker still holds is not spared: a worker that holds a task and stops its heartbeats is hung.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable.engine import history as h
from celery_durable.payload import to_json
from celery_durable.registry import ActivityDef
from celery_durable.runtime import messages
from celery_durable.runtime.messages import REDISPATCH_HEADER
from celery_durable.store.overdue import OverdueTask

if TYPE_CHECKING:
    from celery_durable.runtime.activity import ActivityContext
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
#: stale heartbeats handled per sweep
BATCH = 100


def activity_context(durable: Durable, definition: ActivityDef, request: Any,
                     instance_id: str, execution_id: str, task_id: int,
                     attempt: int) -> ActivityContext:
    """The ``ctx`` of an orchestrated run. An activity with a ``heartbeat_timeout`` beats once
    as it starts (one that hangs before its first heartbeat is noticed too); it, and any
    re-dispatched run, reads the last details reported."""
    from celery_durable.runtime.activity import ActivityContext, durable_header

    store = durable.store.heartbeats
    last = None
    redispatched = durable_header(request, REDISPATCH_HEADER)
    if definition.heartbeat_timeout is not None or redispatched:
        last = store.last_details(instance_id, execution_id, task_id)
    if definition.heartbeat_timeout is not None:
        store.beat(instance_id, execution_id, task_id, _now())
    limit = durable.settings.max_payload_bytes

    def beat(details: Any) -> None:
        payload = to_json(details, f"heartbeat details of activity {definition.name!r}",
                          limit=limit)
        store.beat(instance_id, execution_id, task_id, _now(), payload)

    return ActivityContext(instance_id, task_id, attempt, request.id, last, beat)


def redispatch_lost(durable: Durable, now: datetime | None = None) -> int:
    """Send again the activities whose heartbeats stopped for longer than their timeout
    (of the activities this process knows); return how many."""
    timeouts = {name: d.heartbeat_timeout for name, d in durable.registry.activities.items()
                if d.heartbeat_timeout is not None}
    if not timeouts:
        return 0
    from celery_durable.runtime.redispatch import redispatch_message

    now = now or _now()
    store = durable.store.heartbeats
    sent = 0
    for stale in store.stale(now - min(timeouts.values()), BATCH):
        timeout = timeouts.get(stale.name)
        if timeout is None or stale.beat_at > now - timeout or not store.claim(stale, now):
            continue
        task = OverdueTask(stale.instance_id, stale.execution_id, stale.task_id,
                           h.TASK_SCHEDULED, stale.name, stale.data, stale.orchestrator, None, 0)
        messages.publish(durable.app, [redispatch_message(durable, task)])
        logger.warning("activity %s (task %d of %s) sent no heartbeat for %.0fs (its "
                       "heartbeat_timeout is %.0fs): treated as lost and sent again",
                       stale.name, stale.task_id, stale.instance_id,
                       (now - stale.beat_at).total_seconds(), timeout.total_seconds())
        sent += 1
    return sent


def _now() -> datetime:
    return datetime.now(timezone.utc)
