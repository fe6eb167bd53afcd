"""The sweeper: dispatches far timers as they come within the horizon and recovers anything a
lost or unpublished message left waiting (outbox rows, inbox rows nobody woke up for, activities
and timers stranded by a killed worker: see `celery_durable.runtime.redispatch`).

It runs in every worker as a bootstep (a thread in the worker's main process) and can also run
as the periodic task ``celery_durable.sweep``. Several sweepers at once are safe: timers are
claimed with a conditional update, overdue tasks with a claim of their own, and everything else
is idempotent.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from celery_durable.runtime import limits, messages, schedules, start_queue
from celery_durable.runtime.heartbeats import redispatch_lost
from celery_durable.runtime.redispatch import redispatch
from celery_durable.runtime.retention import sweep_retention
from celery_durable.runtime.timer_queue import timer_queue

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
BATCH = 500


@dataclass
class SweepReport:
    timers: int = 0
    outbox: int = 0
    woken: int = 0
    redispatched: int = 0
    purged: int = 0
    fired: int = 0


def sweep(durable: Durable, now: datetime | None = None) -> SweepReport:
    """One pass over the store; returns what it dispatched."""
    now = now or datetime.now(timezone.utc)
    store, settings, report = durable.store, durable.settings, SweepReport()
    report.fired = schedules.fire_due(durable, now)
    due = store.due_timers(now + settings.timer_horizon, BATCH)
    if due:
        claimed = set(store.mark_timers_dispatched([t.key for t in due], now))
        msgs = [messages.timer_message(t.instance_id, t.execution_id, t.task_id, t.fire_at,
                                       timer_queue(durable))
                for t in due if t.key in claimed]
        messages.publish(durable.app, msgs)
        report.timers = len(msgs)
    stale = store.pending_outbox(now - settings.recovery_grace, BATCH)
    if stale:
        messages.publish(durable.app, [message for _, _, message in stale])
        store.delete_outbox([row_id for row_id, _, _ in stale])
        report.outbox = len(stale)
    older = now - settings.recovery_grace
    # instances waiting for a worker of another version, or for one that imports their
    # orchestrator, are not stranded: waking them here would only bounce them
    # (see Durable.route_rejected)
    for instance_id in store.instances_with_inbox(
            older, BATCH, skip_versions=durable.versions_left_to_others(older),
            only_names=durable.names_left_to_others(), limited=limits.limited_names(durable)):
        # a claim older than the grace stands for a wake-up that is late or lost: renew it, so
        # that the next sweeps leave this one alone while it is on its way
        store.forget_wakeups([instance_id])
        if store.request_wakeup(instance_id):
            start_queue.wake(durable, instance_id)
            report.woken += 1
    report.woken += limits.wake_stalled(durable, now)
    report.woken += durable.entities.sweep(older)
    report.redispatched = redispatch(durable, now) + redispatch_lost(durable, now)
    report.purged = sweep_retention(durable, now)
    if report.timers or report.outbox or report.woken or report.redispatched or report.purged \
            or report.fired:
        logger.info("sweep: %d timer(s) dispatched, %d message(s) re-published, %d instance(s) "
                    "woken, %d overdue task(s) re-dispatched, %d ended instance(s) purged, "
                    "%d scheduled run(s) started", report.timers, report.outbox, report.woken,
                    report.redispatched, report.purged, report.fired)
    return report


class SweeperThread(threading.Thread):
    """Calls ``sweep`` every ``durable.settings.sweep_interval`` seconds until stopped."""

    def __init__(self, durable: Durable) -> None:
        super().__init__(name="celery_durable-sweeper", daemon=True)
        self.durable = durable
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.durable.settings.sweep_interval):
            try:
                sweep(self.durable)
            except Exception:  # a database or broker outage: try again next interval
                logger.exception("sweep failed; retrying in %.1fs",
                                 self.durable.settings.sweep_interval)

    def stop(self) -> None:
        """Stop after the current sweep (if one is running) and wait for it."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=10)


class SweeperStep(bootsteps.StartStopStep):
    """Worker bootstep running the sweeper thread in the worker's main process."""

    requires = {"celery.worker.components:Pool"}

    def create(self, worker: Any) -> SweeperThread | None:
        from celery_durable.runtime.durable import durable_of

        durable = durable_of(worker.app)
        if durable is None or not durable.settings.sweeper_enabled:
            return None
        return SweeperThread(durable)
