"""Firing schedules: what every worker's sweeper does with the schedules that are due.

No beat process: each sweep calls `fire_due`, which has the store lock the due schedules, create
one instance per tick to start (id: the schedule's id and the tick) and advance them in one
transaction, then wakes the instances it created. A worker killed after that commit and before
the wake-ups leaves instances whose starts wait in their inboxes: the sweeper of any worker
wakes them after the recovery grace, as for any lost message. See store/schedules.py for why a
tick starts once whatever the number of workers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from celery_durable.engine import history as h
from celery_durable.runtime import messages
from celery_durable.store import NewInstance
from celery_durable.store.schedules import Fired, ScheduleRecord, Starter

if TYPE_CHECKING:
    from celery_durable.engine.history import HistoryEvent
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
#: the tag every scheduled instance carries: the id of its schedule
SCHEDULE_TAG = "durable.schedule"


def starter(durable: Durable, now: datetime) -> Starter:
    """The `Starter` of ``durable`` at ``now``: a tick's instance, versioned as a client would
    version it, tagged with its schedule's id."""

    def start(record: ScheduleRecord, instance_id: str,
              tick: datetime) -> tuple[NewInstance, list[HistoryEvent]]:
        version = durable.version_for(record.orchestrator)
        event = h.execution_started(record.orchestrator, record.input, now, version=version)
        rec = NewInstance(instance_id=instance_id, name=record.orchestrator, version=version,
                          input=record.input, tags={SCHEDULE_TAG: record.schedule_id},
                          created_at=now)
        return rec, [event]

    return start


def wake(durable: Durable, fired: list[Fired]) -> None:
    """Send the wake-ups of instances a schedule created (lost ones: the sweeper recovers)."""
    if not fired:
        return
    try:
        messages.publish(durable.app, [durable.episode_message(f.instance_id, f.orchestrator)
                                       for f in fired])
    except Exception:  # their starts wait in their inboxes: the sweeper wakes them
        logger.exception("could not send the wake-ups of %d scheduled run(s); the sweeper will",
                         len(fired))


def fire_due(durable: Durable, now: datetime) -> int:
    """Fire the due ticks of every schedule (one transaction), wake what started; return how
    many instances started."""
    fired = durable.store.schedules.fire_due(now, starter(durable, now))
    for f in fired:
        logger.info("schedule started %s (%s)", f.instance_id, f.orchestrator)
    wake(durable, fired)
    return len(fired)
