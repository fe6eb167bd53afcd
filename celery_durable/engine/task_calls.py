"""What ``ctx.call_task`` accepts: a Celery task or its name, JSON arguments, and the Celery
options that can travel with a durable call.

Pure: a Celery task object is read by duck typing (its ``name``), nothing is imported from
Celery. Arguments follow the payload rules (`celery_durable.payload`); dataclasses, named tuples
and pydantic models are sent as plain JSON objects, since the task is ordinary Celery code that
knows nothing of celery_durable's markers.
"""

from __future__ import annotations

from typing import Any

from celery_durable.errors import TaskCallError
from celery_durable.payload import MARKER, to_json

#: Celery options ``call_task`` passes on to ``send_task`` (JSON values only)
PASSED_OPTIONS = frozenset({"queue", "routing_key", "exchange", "priority", "countdown",
                            "expires", "time_limit", "soft_time_limit", "shadow",
                            "ignore_result"})
#: options that would take the call out of celery_durable's hands, and why
REFUSED_OPTIONS = {
    "link": "celery_durable links the task to the callback that records its result",
    "link_error": "celery_durable links the task to the callback that records its failure",
    "task_id": "the Celery task id is derived from the instance and task number, so that a "
               "re-sent message keeps it",
    "serializer": "the message is JSON, checked before anything is stored",
    "headers": "the message carries celery_durable's header",
    "eta": "an ETA datetime is not JSON: pass countdown=seconds, or yield ctx.create_timer() "
           "before the call",
    "chain": "chain the calls in the orchestrator instead",
    "producer": "the message is sent from the outbox after the episode commits",
    "connection": "the message is sent from the outbox after the episode commits",
}


def task_name_of(task: Any) -> str:
    """The Celery name of ``task``: a task object (``@app.task``, ``@shared_task``) or a name."""
    if isinstance(task, str):
        if not task:
            raise TaskCallError("call_task needs a task name, got an empty string")
        return task
    if getattr(task, "__durable_name__", None) is not None:
        raise TaskCallError(f"{task.__durable_name__!r} is an activity: call it with "
                            "ctx.call_activity(activity, input=...); call_task is for plain "
                            "Celery tasks")
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise TaskCallError(f"call_task takes a Celery task (@app.task, @shared_task) or a "
                            f"task name, got {task!r}")
    return name


def task_arguments(name: str, args: Any, kwargs: Any,
                   limit: int | None) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` as the plain JSON the task's message carries, or `PayloadError`."""
    if isinstance(args, (str, bytes, dict)) or not isinstance(args, (list, tuple)):
        raise TaskCallError(f"args of Celery task {name!r} must be a list or tuple, got "
                            f"{args!r}; pass args=(value,) for a single argument")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TaskCallError(f"kwargs of Celery task {name!r} must be a dict, got {kwargs!r}")
    data = to_json({"args": list(args), "kwargs": dict(kwargs or {})},
                   f"arguments of Celery task {name!r}", limit=limit)
    plain = _unmarked(data)
    return plain["args"], plain["kwargs"]


def task_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The Celery options of a call, checked: those in `PASSED_OPTIONS`, with JSON values."""
    for option in options:
        if option in REFUSED_OPTIONS:
            raise TaskCallError(f"call_task of {name!r} does not take the Celery option "
                                f"{option}=: {REFUSED_OPTIONS[option]}")
        if option not in PASSED_OPTIONS:
            raise TaskCallError(f"call_task of {name!r} got the unknown option {option}=; the "
                                "Celery options it passes on are "
                                f"{', '.join(sorted(PASSED_OPTIONS))}")
    for option, value in options.items():
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise TaskCallError(f"call_task of {name!r}: the option {option}={value!r} is not "
                                "a JSON value (str, number, bool); pass seconds for countdown "
                                "and expires")
    return dict(options)


def _unmarked(value: Any) -> Any:
    """JSON data without celery_durable's object markers."""
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != MARKER}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value
