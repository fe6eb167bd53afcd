"""Existing Celery tasks called by orchestrations (``ctx.call_task``): recording their outcome.

The task's message (`messages.plain_task_message`) is the plain task's own, with a ``link`` to
``celery_durable.task_succeeded`` and a ``link_error`` to ``celery_durable.task_failed``. Celery
runs these callbacks wherever the task ran, once its own retries (``autoretry_for``,
``self.retry``) are over, so the worker that runs the task needs nothing of celery_durable:

- **success**: the worker sends ``task_succeeded(result, call=..., name=...)`` as a JSON
  message (the callback's ``serializer``) to the instance's episode queue. A result JSON cannot
  hold either fails to encode there (Celery then fails the task: the errback runs) or arrives as
  a value kombu's JSON decodes (a datetime, a UUID): both are recorded as the task's failure,
  with what to return instead.
- **failure**, on a worker that has ``task_failed`` registered (a worker of an app with a
  ``Durable``): Celery calls it inline with ``(request, exc, traceback)``, so the remote
  exception's type, message and traceback are recorded at once. On a worker without
  celery_durable, Celery sends it the task id only (``task_failed(task_id, call=..., name=...)``);
  the exception is then read from the app's result backend when both apps share one, else the
  failure says where to find it.

Either way the completion goes through `Durable.record` (the next episode runs inline when the
instance's lock is free) with the inbox's dedup key: a callback delivered twice, or a re-run
after a re-dispatch, is recorded once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery_durable.engine import history as h
from celery_durable.engine.failure import FailureDetails
from celery_durable.errors import MalformedMessageError, PayloadError
from celery_durable.payload import to_json
from celery_durable.runtime import inbound, messages
from celery_durable.runtime.activity import record_completion
from celery_durable.runtime.episode import completion_item

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)

#: the error type recorded when the exception of a task that failed on a worker without
#: celery_durable cannot be known (no shared result backend)
REMOTE_FAILURE = "RemoteTaskFailed"
_RETURN = ("return JSON values (str, int, float, bool, None, list, dict with str keys) from "
           "a task an orchestration calls: e.g. a list instead of a set, value.isoformat() "
           "instead of a datetime, str(value) instead of a UUID or Decimal")


def register_callbacks(durable: Durable) -> None:
    """Register ``celery_durable.task_succeeded`` / ``task_failed`` on ``durable.app``."""
    options: dict[str, Any] = {"shared": False, "acks_late": True,
                               "reject_on_worker_lost": True, "ignore_result": True,
                               "Strategy": inbound.STRATEGY}

    @durable.app.task(name=messages.TASK_SUCCEEDED, bind=True, **options)
    def task_succeeded(task: Any, result: Any = None, *, call: Any = None,
                       name: Any = "") -> None:
        """Record the result of a Celery task an orchestration called (its ``link``)."""
        record_success(durable, task, call, name, result)

    # not bound: Celery calls an errback registered on the failing task's worker inline with
    # (request, exc, traceback) only when its header takes more than one argument
    @durable.app.task(name=messages.TASK_FAILED, **options)
    def task_failed(request: Any = None, exc: Any = None, traceback: Any = None, *,
                    call: Any = None, name: Any = "") -> None:
        """Record the final failure of a Celery task an orchestration called (its
        ``link_error``): ``(request, exc, traceback)`` inline, or ``(task_id)`` as a message."""
        if isinstance(exc, BaseException):
            failure = exception_details(str(name), exc, traceback)
        else:
            failure = remote_failure(durable, str(name), request)
        record_failure(durable, task_failed, call, name, failure)


def record_success(durable: Durable, task: Any, call: Any, name: Any, result: Any) -> None:
    """Record ``result`` as the completion of the call ``call`` (the message's header); a
    value JSON cannot hold is recorded as the task's failure."""
    checked = _checked_call(name, call)
    if checked is None:
        return
    instance_id, execution_id, task_id, _attempt, orchestrator = checked
    try:
        value = to_json(result, f"the result of Celery task {name!r}",
                        limit=durable.settings.max_payload_bytes)
    except PayloadError as exc:
        failure = FailureDetails(f"{exc}; {_RETURN}", type(exc).__name__)
        event = h.task_failed(task_id, failure, _now())
        logger.warning("Celery task %s (task %s of %s) returned what JSON cannot hold: "
                       "recorded as its failure: %s", name, task_id, instance_id, exc)
    else:
        event = h.task_completed(task_id, value, _now())
    record_completion(durable, task, instance_id, completion_item(execution_id, event),
                      orchestrator)


def record_failure(durable: Durable, task: Any, call: Any, name: Any,
                   failure: FailureDetails) -> None:
    """Record ``failure`` as the completion of the call ``call``."""
    checked = _checked_call(name, call)
    if checked is None:
        return
    instance_id, execution_id, task_id, _attempt, orchestrator = checked
    event = h.task_failed(task_id, failure, _now())
    record_completion(durable, task, instance_id, completion_item(execution_id, event),
                      orchestrator)


def exception_details(name: str, exc: BaseException, traceback: Any = None) -> FailureDetails:
    """The failure of task ``name`` that raised ``exc``; a result the link's JSON could not
    encode (Celery fails the task with kombu's EncodeError) says what to return instead."""
    details = FailureDetails.from_exception(exc)
    if isinstance(traceback, str) and traceback:
        details = FailureDetails(details.message, details.error_type, traceback)
    if details.error_type == "EncodeError":
        message = (f"Celery task {name!r} returned a value JSON cannot hold "
                   f"({details.message}); {_RETURN}")
        details = FailureDetails(message, details.error_type, details.stack_trace)
    return details


def remote_failure(durable: Durable, name: str, celery_task_id: Any) -> FailureDetails:
    """The failure of a task whose errback got only its task id (it ran on a worker without
    celery_durable): read from the result backend when the app has one, else a description
    that says where the exception is."""
    try:
        meta = durable.app.backend.get_task_meta(str(celery_task_id))
    except Exception:  # noqa: BLE001 - no result backend (DisabledBackend), or it is down
        meta = None
    result = meta.get("result") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and meta.get("status") == "FAILURE" and \
            isinstance(result, BaseException):
        return exception_details(name, result, meta.get("traceback"))
    return FailureDetails(
        f"Celery task {name!r} failed on a worker that does not run celery_durable; Celery "
        f"sends such a worker's errback only the task id ({celery_task_id}), so its exception "
        "is in that worker's log: give both apps the same result_backend (with results "
        "stored) to record its type and message here", REMOTE_FAILURE)


def _checked_call(name: Any, call: Any) -> tuple[str, str, int, int, str] | None:
    try:
        if not isinstance(name, str) or not name:
            raise inbound.malformed("celery_durable callback", f"names the task {name!r}")
        return inbound.activity_header(name, call)
    except MalformedMessageError as exc:
        logger.error("%s", exc)
        return None


def _now() -> datetime:
    return datetime.now(timezone.utc)
