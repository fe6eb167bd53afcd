"""Re-dispatch of stranded activities and timers (a step of every sweep).

With acks_late, the message of a task whose worker was killed is not lost but stranded: Redis
hands it out again only after its ``visibility_timeout`` (1 hour by default), and kombu's
filesystem transport has already removed it. So the sweeper looks for activities scheduled, and
timers due, more than ``durable_activity_redispatch_after`` ago without a completion
(`Store.overdue_tasks`), claims them (one sweeper checks each, at most once per bound), asks the
workers which of them they still hold (``query_task``: an active, reserved or scheduled request
counts as held) and re-publishes, with the same Celery task id, those whose message cannot be
waiting in a queue (`celery_durable.runtime.queued`: a backlog is not copied).

A task that still runs somewhere is left alone and checked again a bound later. When no worker
answers at all (remote control disabled, or a broker without broadcast), nobody can be shown to
hold the tasks, and they are re-dispatched: activities are at-least-once anyway, and hanging
would be worse. A re-run's completion is recorded once: the inbox keeps one row per dedup key
and the engine drops a second completion of a task. A re-dispatched message that arrives after
its task completed after all (it waited in a long queue) does not run the activity again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from celery import Celery
from kombu.exceptions import ContentDisallowed

from celery_durable.engine.actions import ScheduleActivity, scheduled_task_of
from celery_durable.engine.history import utc
from celery_durable.errors import UnknownNameError
from celery_durable.runtime import messages, queued
from celery_durable.runtime.timer_queue import timer_queue
from celery_durable.store.overdue import OverdueTask

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
#: overdue tasks handled per sweep
BATCH = 100
#: seconds the sweeper waits for the workers' answers to ``query_task``
INSPECT_TIMEOUT = 1.0
#: ``query_task`` states of a request a worker holds (anything else has finished)
HELD_STATES = frozenset({"active", "reserved", "scheduled"})


def redispatch(durable: Durable, now: datetime | None = None) -> int:
    """Re-publish the overdue tasks no live worker holds; return how many."""
    now = now or datetime.now(timezone.utc)
    store, bound = durable.store, durable.settings.activity_redispatch_after
    # a task this process cannot route (an activity it does not import) is left to the
    # sweepers of workers that can, unclaimed
    overdue = [task for task in store.overdue_tasks(now - bound, now, BATCH)
               if _routable(durable, task)]
    claimed = {celery_task_id(task): task for task in store.claim_overdue(overdue, now, bound)}
    if not claimed:
        return 0
    held = held_by_workers(durable.app, list(claimed))
    if held is None:
        logger.warning("no worker answered query_task (is remote control disabled?): "
                       "re-dispatching %d overdue task(s) that may still be running",
                       len(claimed))
        held = set()
    unheld = {celery_id: task for celery_id, task in claimed.items() if celery_id not in held}
    # a message still waiting in a long queue is not stranded: sending it again would only
    # lengthen the queue (it is checked again a bound later)
    loose = queued.stranded(durable.app, {celery_id: _queue(durable, task)
                                          for celery_id, task in unheld.items()})
    if len(loose) < len(unheld):
        logger.info("left %d overdue task(s) alone: their queue holds messages waiting for "
                    "delivery (checked again in %.0fs)", len(unheld) - len(loose),
                    bound.total_seconds())
    stranded = [task for celery_id, task in unheld.items() if celery_id in loose]
    if held:
        logger.debug("%d overdue task(s) still held by live workers: %s", len(held),
                     ", ".join(sorted(held)))
    messages.publish(durable.app, [redispatch_message(durable, task) for task in stranded])
    store.mark_redispatched(stranded, now, bound)
    for task in stranded:
        logger.info("re-dispatched %s of instance %s (task %d, Celery id %s): no completion "
                    "after %.0fs and no live worker holds it (re-dispatch %d)",
                    _what(task),
                    task.instance_id, task.task_id, celery_task_id(task),
                    bound.total_seconds(), task.redispatched + 1)
    return len(stranded)


def held_by_workers(app: Celery, celery_ids: list[str]) -> set[str] | None:
    """The ids among ``celery_ids`` that a live worker holds; None if no worker answered."""
    # a connection of its own, closed here: the broadcast leaves the reply channel polling
    # (a pending BRPOP on Redis), and a pooled connection in that state hangs the after-fork
    # cleanup of every process forked later (kombu closes pooled connections in the child)
    with app.connection_for_read() as conn:
        try:
            replies = app.control.inspect(timeout=INSPECT_TIMEOUT, connection=conn).query_task(
                *celery_ids)
        except ContentDisallowed as exc:
            # a worker of another app (a team whose tasks ctx.call_task calls) answers control
            # commands in its task_serializer; pickle is never accepted here
            logger.warning("a worker answered query_task in a serializer this app does not "
                           "accept (%s): give its app task_serializer='json' (or accept "
                           "nothing but JSON) so that the sweeper can tell which tasks run",
                           exc)
            return None
    if not replies:
        return None
    held = set()
    for reply in replies.values():
        for celery_id, answer in (reply if isinstance(reply, dict) else {}).items():
            # ``[state, info]``; anything else (an error reply) holds nothing
            if isinstance(answer, (list, tuple)) and answer and answer[0] in HELD_STATES:
                held.add(celery_id)
    return held


def celery_task_id(task: OverdueTask) -> str:
    """The Celery task id the task's message was (and is again) sent with."""
    if task.is_timer:
        return messages.timer_task_id(task.instance_id, task.execution_id, task.task_id)
    return messages.activity_task_id(task.instance_id, task.execution_id, task.task_id,
                                     _attempt(task))


def redispatch_message(durable: Durable, task: OverdueTask) -> messages.Message:
    """The task's message as its episode sent it, marked as re-dispatched."""
    data = task.data if isinstance(task.data, dict) else {}
    if task.is_timer:
        message = messages.timer_message(task.instance_id, task.execution_id, task.task_id,
                                         utc(datetime.fromisoformat(data["fire_at"])),
                                         timer_queue(durable))
        message["options"]["headers"] = {}
    elif (call := scheduled_task_of(task.task_id, task.name or "", data)) is not None:
        # a ctx.call_task: the same message, task id, link and link_error
        message = messages.plain_task_message(task.instance_id, task.execution_id, call,
                                              task.orchestrator,
                                              durable.episode_queue(task.orchestrator))
    else:
        assert task.name is not None
        action = ScheduleActivity(task.task_id, task.name, data.get("input"), _attempt(task))
        queue = (durable.episode_queue(task.orchestrator) if data.get("local")  # a batch's
                 else durable.registry.activity(task.name).queue)  # leftover local activity
        message = messages.activity_message(task.instance_id, task.execution_id, action,
                                            queue, task.orchestrator)
    message["options"]["headers"][messages.REDISPATCH_HEADER] = task.redispatched + 1
    return message


def _what(task: OverdueTask) -> str:
    if task.is_timer:
        return f"timer {task.task_id}"
    if scheduled_task_of(task.task_id, task.name or "", task.data) is not None:
        return f"Celery task {task.name!r}"
    return f"activity {task.name!r}"


def _queue(durable: Durable, task: OverdueTask) -> str:
    if task.is_timer:
        return queued.queue_of(durable.app, messages.TIMER_TASK, durable.settings.episode_queue)
    assert task.name is not None
    call = scheduled_task_of(task.task_id, task.name, task.data)
    if call is not None:
        return queued.queue_of(durable.app, task.name, call.options.get("queue"))
    return queued.queue_of(durable.app, task.name, durable.registry.activity(task.name).queue)


def _attempt(task: OverdueTask) -> int:
    data = task.data if isinstance(task.data, dict) else {}
    return int(data.get("attempt") or 1)


def _routable(durable: Durable, task: OverdueTask) -> bool:
    if task.is_timer or scheduled_task_of(task.task_id, task.name or "", task.data):
        return True  # a Celery task called by name: any process can send it
    try:
        durable.registry.activity(task.name or "")
    except UnknownNameError:
        return False
    return True
