"""The package's exceptions: one base, `DurableError`, and a subclass per failure a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery_durable.engine.failure import FailureDetails


class DurableError(Exception):
    """Base class of every error raised by celery_durable."""


class TaskFailedError(DurableError):
    """An activity or sub-orchestration failed; raised inside the orchestrator at its ``yield``."""

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.details = details


class NonDeterminismError(DurableError):
    """Replayed orchestrator code did something other than what its history records."""


class OrchestrationNotFoundError(DurableError):
    """No orchestration instance has the given id."""


class OrchestrationFailedError(DurableError):
    """Raised by ``OrchestrationState.raise_if_failed`` for a FAILED instance."""

    def __init__(self, message: str, details: FailureDetails | None) -> None:
        super().__init__(message)
        self.details = details


class PayloadError(DurableError, TypeError):
    """A value cannot be stored as JSON (inputs, outputs, event data, custom status)."""


class PayloadTooLargeError(PayloadError):
    """A payload's JSON is larger than ``durable_max_payload_bytes``."""


class UnknownNameError(DurableError, LookupError):
    """No orchestrator or activity is registered under the given name."""


class InvalidInstanceIdError(DurableError, ValueError):
    """An instance id is empty, too long or contains characters that are not allowed."""


class InvalidNameError(DurableError, ValueError):
    """An event name is empty, too long or contains characters that are not allowed."""


class OrchestrationStateError(DurableError):
    """The requested operation does not apply to the instance in its current state."""


class OrchestrationAlreadyExistsError(OrchestrationStateError):
    """A new orchestration was given the id of an instance that has not ended yet."""


class OrchestrationEndedError(OrchestrationStateError):
    """An event, suspend, resume or terminate was sent to an instance that has ended."""


class MalformedMessageError(DurableError):
    """A message on a celery_durable task is not one celery_durable sends (wrong arguments, or
    a serializer other than JSON); the worker logs it and drops it."""


class VersionMismatchError(DurableError):
    """A worker whose ``VersioningOptions`` do not accept an instance's version failed it
    (``VersionFailureStrategy.FAIL``); the instance's ``failure_details.error_type`` names it."""


class ConfigurationError(DurableError):
    """The ``durable_*`` settings changed after they were used (e.g. the app was configured after
    its store was opened), or hold a value that cannot work."""


class TaskCallError(DurableError, ValueError):
    """``ctx.call_task`` was given something it cannot send: a Celery option that would take
    the call out of celery_durable's hands (``link``, ``task_id``, ``serializer``, ...), an
    option value that is not JSON, or a task that is not a Celery task or a name."""


class TransactionMismatchError(DurableError, ValueError):
    """``schedule_new_orchestration(session=...)`` got a transaction that is not on the store's
    database (or not in a transaction at all)."""


class DjangoDatabaseError(DurableError, ValueError):
    """A Django ``DATABASES`` entry that the store cannot use (see
    ``celery_durable.contrib.django.store_url``)."""


class InvalidScheduleError(DurableError, ValueError):
    """A schedule's definition cannot be used: bad cron expression, interval, zone or policy."""


class ScheduleNotFoundError(DurableError, LookupError):
    """No schedule has the given id."""


class ScheduleAlreadyExistsError(DurableError):
    """A schedule with this id exists with another definition."""


class EntityOperationError(DurableError):
    """An entity operation cannot be run as asked: an operation the entity does not have, or a
    call the rules of critical sections forbid (the message says which rule and what to do)."""
