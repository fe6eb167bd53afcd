"""Broker messages: what an episode's outbox holds, and how it is published.

A message is a small JSON dict ``{"task", "args", "options"}``; its size does not depend on the
instance's history. Celery task ids of activities and timers are deterministic (instance, execution, task id,
attempt), so a re-published message is recognisable in Flower and in the result backend, and a
worker can be asked whether it holds one (`celery_durable.runtime.redispatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import Celery

from celery_durable.engine.actions import ScheduleActivity, ScheduleTask
from celery_durable.engine.history import utc
from celery_durable.runtime.publisher import BATCH as BATCH  # most messages a batch holds
from celery_durable.runtime.publisher import publisher

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)

EPISODE_TASK = "celery_durable.episode"
TIMER_TASK = "celery_durable.timer"
SWEEP_TASK = "celery_durable.sweep"
#: the link / link_error callbacks of a ``ctx.call_task`` (`celery_durable.runtime.plain_tasks`)
TASK_SUCCEEDED = "celery_durable.task_succeeded"
TASK_FAILED = "celery_durable.task_failed"
DURABLE_HEADER = "durable"
#: header of a message the sweeper re-dispatched: how many times its task was re-dispatched
REDISPATCH_HEADER = "durable_redispatch"

Message = dict[str, Any]


def episode_message(instance_id: str, name: str, queue: str | None, *,
                    countdown: float | None = None, rejections: int = 0) -> Message:
    """The wake-up of an instance; ``rejections`` counts the workers whose versioning rejected
    it on its way (see `Durable.route_rejected`)."""
    options: dict[str, Any] = {"argsrepr": f"({instance_id!r}, {name!r})"}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    message: Message = {"task": EPISODE_TASK, "args": [instance_id, name], "options": options}
    if rejections:
        message["kwargs"] = {"rejections": rejections}
    return message


def activity_task_id(instance_id: str, execution_id: str, task_id: int, attempt: int) -> str:
    """The Celery task id of an activity run (deterministic: a re-sent message keeps it)."""
    return f"{instance_id}:{execution_id[:8]}:{task_id}:{attempt}"


def timer_task_id(instance_id: str, execution_id: str, task_id: int) -> str:
    """The Celery task id of a timer (fixed: a re-sent timer message keeps it, so that workers
    can be asked whether they hold it)."""
    return f"{instance_id}:{execution_id[:8]}:timer:{task_id}"


def activity_message(instance_id: str, execution_id: str, action: ScheduleActivity,
                     queue: str | None, orchestrator: str) -> Message:
    header = [instance_id, execution_id, action.task_id, action.attempt, orchestrator]
    options: dict[str, Any] = {
        "task_id": activity_task_id(instance_id, execution_id, action.task_id, action.attempt),
        "headers": {DURABLE_HEADER: header},
    }
    if queue:
        options["queue"] = queue
    return {"task": action.name, "args": [action.input], "options": options}


def plain_task_message(instance_id: str, execution_id: str, action: ScheduleTask,
                       orchestrator: str, callback_queue: str) -> Message:
    """The message of a ``ctx.call_task``: the task's own args and kwargs, our header, and
    ``link`` / ``link_error`` callbacks to celery_durable's tasks on ``callback_queue`` (the
    instance's episode queue). The callbacks carry everything they record (JSON, so that a
    worker without celery_durable can send them on), and are sent as JSON whatever the
    task's app serializes with."""
    header = [instance_id, execution_id, action.task_id, action.attempt, orchestrator]

    def callback(task: str) -> dict[str, Any]:
        return {"task": task, "args": [], "kwargs": {"call": header, "name": action.name},
                "options": {"queue": callback_queue, "serializer": "json"},
                "subtask_type": None, "immutable": False}

    options: dict[str, Any] = {
        **action.options,
        "task_id": activity_task_id(instance_id, execution_id, action.task_id, action.attempt),
        "headers": {DURABLE_HEADER: header},
        "link": [callback(TASK_SUCCEEDED)], "link_error": [callback(TASK_FAILED)],
    }
    return {"task": action.name, "args": list(action.args), "kwargs": dict(action.kwargs),
            "options": options}


def timer_message(instance_id: str, execution_id: str, task_id: int, fire_at: datetime,
                  queue: str | None) -> Message:
    options: dict[str, Any] = {"eta": utc(fire_at).isoformat(),
                               "task_id": timer_task_id(instance_id, execution_id, task_id),
                               "argsrepr": f"({instance_id!r}, timer {task_id})"}
    if queue:
        options["queue"] = queue
    return {"task": TIMER_TASK, "args": [instance_id, execution_id, task_id,
                                         utc(fire_at).isoformat()], "options": options}


def publish(app: Celery, messages: Iterable[Message]) -> None:
    """Send messages as ``app.send_task`` would, in kombu's publish batches
    (`celery_durable.runtime.publisher`). Should a batch fail, the caller keeps its outbox rows
    and the sweeper publishes them again."""
    publisher(app).publish(messages)


def publish_committed(durable: Durable, outbox: list[Message], ids: list[int]) -> None:
    """Publish the outbox an episode (of an orchestration or an entity) committed as rows
    ``ids``, then acknowledge them; should publishing fail, the rows stay and the sweeper
    re-publishes them."""
    if not ids:
        return
    try:
        publish(durable.app, outbox)
    except Exception:  # the rows stay; the sweeper re-publishes them
        logger.exception("publishing %d message(s) failed; the sweeper will retry", len(outbox))
        return
    durable.store.acknowledge_outbox(ids)
