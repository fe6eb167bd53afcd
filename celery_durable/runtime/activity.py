"""Activities as Celery tasks: the task wrapper and the ActivityContext it passes to the function.

An activity is an ordinary Celery task (acks_late, reject_on_worker_lost). Sent by an
orchestration, its message carries a ``durable`` header naming the instance, execution, task id
and attempt; once the function returns or raises, the outcome is recorded in the instance's inbox
(idempotently) and the next episode runs inline when the instance's lock is free; a database
error while writing it (a dropped connection, a database restarting) is tried again in place for
a few seconds before the task is retried, which runs the activity again. Called as a plain task
(``.delay``) it is just the function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import Task
from sqlalchemy.exc import DBAPIError

from celery_durable import tracing
from celery_durable.engine import history as h
from celery_durable.engine.failure import FailureDetails
from celery_durable.errors import DurableError, MalformedMessageError, OrchestrationNotFoundError
from celery_durable.payload import from_json, input_annotation, to_json
from celery_durable.registry import ActivityDef
from celery_durable.runtime import heartbeats, inbound
from celery_durable.runtime.episode import completion_item
from celery_durable.runtime.inbound import STRATEGY
from celery_durable.runtime.messages import DURABLE_HEADER, REDISPATCH_HEADER

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)

#: times an activity's outcome is written (a database error: the connection dropped, or the
#: database restarts) before the task is retried, which runs the activity again; the waits
#: between them double from RECORD_BACKOFF seconds (0.2 + 0.4 + 0.8 + 1.6 = 3 s in all)
RECORD_ATTEMPTS = 5
RECORD_BACKOFF = 0.2

#: Celery task options every activity gets unless its decorator says otherwise.
ACTIVITY_DEFAULTS: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}


class ActivityFailed(DurableError):
    """What Celery sees when an orchestrated activity raised: its failure is already recorded
    for the orchestration, which decides what happens next (retry policy, except clause), so
    Celery logs it as an expected outcome rather than with a traceback."""


@dataclass(frozen=True)
class ActivityContext:
    """What an activity function receives as ``ctx``."""

    orchestration_id: str | None = None
    task_id: int | None = None
    attempt: int = 1
    #: the Celery task id of this run
    celery_task_id: str | None = None
    #: the details of the last heartbeat an earlier run of this task reported (a run lost and
    #: re-dispatched, see ``heartbeat_timeout``), else None
    last_heartbeat: Any = None
    _beat: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    def heartbeat(self, details: Any = None) -> None:
        """Report progress: ``details`` (JSON) are kept for the next run of this task should
        this one be lost, and the activity counts as alive for its ``heartbeat_timeout``.
        Called as a plain Celery task (not orchestrated), it does nothing."""
        if self._beat is not None:
            self._beat(details)


class ActivityTask(Task):
    """Celery task class of activities: sends to the activity's ``queue`` when called directly.

    (Celery deprecates the ``queue`` task attribute in favour of routes; the queue is kept on
    ``durable_queue`` and applied here, and orchestrations route their messages explicitly.)
    """

    durable_queue: str | None = None
    #: the activity this task runs
    durable_definition: ActivityDef | None = None

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: Any = None,
                    producer: Any = None, link: Any = None, link_error: Any = None,
                    shadow: Any = None, **options: Any) -> Any:
        if self.durable_queue and "queue" not in options:
            options["queue"] = self.durable_queue
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow,
                                   **options)


def durable_header(request: Any, name: str = DURABLE_HEADER) -> Any:
    """The ``[instance_id, execution_id, task_id, attempt, orchestrator]`` header of an
    orchestrated run (as received: `inbound.activity_header` checks it), or None; or, with
    ``name``, that header of the message."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value if value else None


def make_activity_task(durable: Durable, definition: ActivityDef) -> Any:
    """Register ``definition`` as a Celery task on ``durable.app`` and return the task."""
    annotation = input_annotation(definition.fn)
    options = {**ACTIVITY_DEFAULTS, **definition.options}
    options["durable_queue"] = options.pop("queue", None)
    options.pop("heartbeat_timeout", None)  # ours, not Celery's (ActivityDef.heartbeat_timeout)
    options["throws"] = (*options.get("throws", ()), ActivityFailed)
    # orchestrated runs (their messages carry the durable header) take JSON messages only
    options.setdefault("Strategy", STRATEGY)
    options["durable_json_only_header"] = DURABLE_HEADER
    # what a local activity runs (`runtime.local_activities`): the test harness's mocks too
    options["durable_definition"] = definition

    def run(task: Any, input: Any = None) -> Any:
        header = durable_header(task.request)
        if header is None:
            ctx = ActivityContext(celery_task_id=task.request.id)
            return definition.fn(ctx, from_json(input, annotation))
        try:
            instance_id, execution_id, task_id, attempt, orchestrator = \
                inbound.activity_header(definition.name, header)
        except MalformedMessageError as exc:
            logger.error("%s", exc)
            return None
        if durable_header(task.request, REDISPATCH_HEADER) and \
                durable.store.completion_recorded(instance_id, execution_id, int(task_id)):
            logger.info("activity %s (task %s of %s) was re-dispatched, but it has completed "
                        "meanwhile: not run again", definition.name, task_id, instance_id)
            return None
        ctx = heartbeats.activity_context(durable, definition, task.request, instance_id,
                                          execution_id, int(task_id), attempt)
        try:
            with tracing.activity_span(
                    task.request, definition.name, instance_id, int(task_id), attempt,
                    execution_id, lambda: durable.store.execution_start(instance_id,
                                                                        execution_id)):
                result = to_json(definition.fn(ctx, from_json(input, annotation)),
                                 f"result of activity {definition.name!r}",
                                 limit=durable.settings.max_payload_bytes)
        except Exception as exc:
            failure = FailureDetails.from_exception(exc)
            event = h.task_failed(int(task_id), failure, _now())
            _record(task, instance_id, completion_item(execution_id, event), orchestrator)
            raise ActivityFailed(f"{failure} (recorded for orchestration {instance_id!r}, "
                                 f"task {task_id}, attempt {attempt})") from exc
        event = h.task_completed(int(task_id), result, _now())
        _record(task, instance_id, completion_item(execution_id, event), orchestrator)
        return result

    def _record(task: Any, instance_id: str, item: Any, orchestrator: str) -> None:
        record_completion(durable, task, instance_id, item, orchestrator)

    # Celery builds a signature checker by exec'ing ``def <__name__>(...)``: a lambda's
    # "<lambda>" (or any name that is not an identifier) would break the whole app
    fn_name = definition.fn.__name__
    run.__name__ = fn_name if fn_name.isidentifier() else "activity"
    run.__doc__ = definition.fn.__doc__
    run.__module__ = definition.fn.__module__
    return durable.app.task(run, name=definition.name, bind=True, shared=False,
                            base=ActivityTask, **options)


def record_completion(durable: Durable, task: Any, instance_id: str, item: Any,
                      orchestrator: str) -> None:
    """Record a task's completion ``item`` for its instance (`Durable.record`). A database
    error is tried again in place (`RECORD_ATTEMPTS`); should the store stay unreachable, the
    Celery ``task`` is retried (a task called directly, e.g. an errback run inline, re-raises
    instead: the sweeper's re-dispatch runs the work again later). A purged instance drops it."""
    try:
        _record_again_on_database_errors(durable, instance_id, item, orchestrator)
    except OrchestrationNotFoundError:
        logger.info("orchestration %s no longer exists (purged): dropped %s of task %s",
                    instance_id, item.event.kind, item.event.task_id)
    except Exception as exc:  # the store stays unreachable: run again rather than lose it
        logger.warning("recording %s of %s failed (%s); the task will be retried",
                       item.event.kind, instance_id, exc)
        raise task.retry(exc=exc, countdown=1.0, max_retries=None) from exc


def _record_again_on_database_errors(durable: Durable, instance_id: str, item: Any,
                                     orchestrator: str) -> None:
    for attempt in range(RECORD_ATTEMPTS - 1):
        try:
            durable.record(instance_id, item, orchestrator)
            return
        except DBAPIError as exc:  # a dropped connection, a restarting database
            delay = RECORD_BACKOFF * 2 ** attempt
            logger.warning("recording %s of %s failed (%s); trying again in %.1fs",
                           item.event.kind, instance_id, exc, delay)
            time.sleep(delay)
    durable.record(instance_id, item, orchestrator)  # the last attempt's error propagates


def _now() -> datetime:
    return datetime.now(timezone.utc)
