"""What a worker accepts on celery_durable's tasks: JSON messages with arguments of the right shape.

Every message celery_durable sends is JSON. A message on one of its tasks (the episode and timer
tasks, and an activity run for an orchestration) in another serializer is refused before its body
is decoded, whatever the app's ``accept_content`` says: unpickling a forged message would run
its code. A JSON message whose arguments are not what celery_durable sends is logged and dropped
by the task, before it touches the store.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker import strategy

from celery_durable.errors import MalformedMessageError
from celery_durable.ids import check_instance_id

logger = logging.getLogger(__name__)

JSON = "application/json"
#: ``Task.Strategy`` of celery_durable's tasks and activities
STRATEGY = "celery_durable.runtime.inbound:json_only_strategy"


class RefusedMessage(MalformedMessageError, InvalidTaskError):
    """A message refused before decoding; Celery's consumer logs it and rejects it (a queue
    with a dead-letter exchange keeps it there)."""


def json_only_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default task strategy, refusing messages that are not JSON (``Task.Strategy``).

    A task with ``durable_json_only_header`` set refuses only messages carrying that header
    (activities: orchestrated runs carry it; plain ``.delay`` calls are the app's business).
    """
    handle = strategy.default(task, app, consumer, **kwargs)
    header = getattr(task, "durable_json_only_header", None)

    def handle_json(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                    **options: Any) -> Any:
        if message.content_type != JSON and (header is None or header in message.headers):
            raise RefusedMessage(
                f"celery_durable refused a {message.content_type!r} message for task "
                f"{task.name!r} without decoding it: its tasks take JSON messages only, "
                "whatever accept_content allows; the message was dropped (send it with "
                "serializer='json')")
        return handle(message, body, ack, reject, callbacks, **options)

    return handle_json


def malformed(task_name: str, problem: str) -> MalformedMessageError:
    return MalformedMessageError(
        f"a {task_name} message {problem}; celery_durable did not send it (or it was corrupted) "
        "so it was dropped without touching the store")


def episode_args(instance_id: Any, name: Any, rejections: Any) -> tuple[str, int]:
    """The instance id and rejection count of an episode message, or `MalformedMessageError`."""
    task = "celery_durable.episode"
    _instance_id(task, instance_id)
    if not isinstance(name, str):
        raise malformed(task, f"names the orchestrator {name!r}, not a string")
    if isinstance(rejections, bool) or not isinstance(rejections, int) or rejections < 0:
        raise malformed(task, f"counts {rejections!r} rejections, not an int >= 0")
    return instance_id, rejections


def timer_args(instance_id: Any, execution_id: Any, task_id: Any,
               fire_at: Any) -> tuple[str, str, int, datetime]:
    """The arguments of a timer message, checked, or `MalformedMessageError`."""
    task = "celery_durable.timer"
    _instance_id(task, instance_id)
    if not isinstance(execution_id, str) or not 1 <= len(execution_id) <= 32:
        raise malformed(task, f"has the execution id {execution_id!r}")
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise malformed(task, f"has the task id {task_id!r}, not an int")
    try:
        when = datetime.fromisoformat(fire_at)
    except (TypeError, ValueError):
        raise malformed(task, f"fires at {fire_at!r}, not an ISO datetime") from None
    return instance_id, execution_id, task_id, when


def activity_header(task: str, header: Any) -> tuple[str, str, int, int, str]:
    """The ``durable`` header of an orchestrated activity run (instance id, execution id, task
    id, attempt, orchestrator), checked, or `MalformedMessageError`."""
    if not isinstance(header, (list, tuple)) or len(header) != 5:
        raise malformed(task, f"has the durable header {header!r}, not 5 values")
    instance_id, execution_id, task_id, attempt, orchestrator = header
    _instance_id(task, instance_id)
    if not isinstance(execution_id, str) or not 1 <= len(execution_id) <= 32:
        raise malformed(task, f"has the execution id {execution_id!r}")
    for what, value in (("task id", task_id), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise malformed(task, f"has the {what} {value!r}, not an int")
    if not isinstance(orchestrator, str):
        raise malformed(task, f"names the orchestrator {orchestrator!r}, not a string")
    return instance_id, execution_id, task_id, attempt, orchestrator


def _instance_id(task: str, instance_id: Any) -> None:
    try:
        check_instance_id(instance_id)
    except Exception as exc:  # InvalidInstanceIdError
        raise malformed(task, f"is for an invalid instance id ({exc})") from None
