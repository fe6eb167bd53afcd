"""celery_durable: durable orchestrations for Celery.

Decorate functions with ``@orchestrator`` and ``@activity``, bind a ``Durable`` to your Celery
app, and drive instances through ``durable.client``.
"""

from celery_durable.client import DurableClient
from celery_durable.client_schedules import Schedule
from celery_durable.engine.context import OrchestrationContext
from celery_durable.engine.entities import DurableEntity, EntityContext
from celery_durable.engine.entity_calls import CriticalSection
from celery_durable.engine.entity_id import EntityInstanceId
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.retry import RetryPolicy
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.engine.tasks import Task, when_all, when_any
from celery_durable.entity import CleanEntityStorageResult, EntityMetadata, entity
from celery_durable.errors import (
    DurableError,
    EntityOperationError,
    InvalidInstanceIdError,
    InvalidNameError,
    InvalidScheduleError,
    MalformedMessageError,
    NonDeterminismError,
    OrchestrationAlreadyExistsError,
    OrchestrationEndedError,
    OrchestrationFailedError,
    OrchestrationNotFoundError,
    OrchestrationStateError,
    PayloadError,
    PayloadTooLargeError,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    TaskFailedError,
    TransactionMismatchError,
    UnknownNameError,
    VersionMismatchError,
)
from celery_durable.registry import activity, orchestrator
from celery_durable.runtime.activity import ActivityContext
from celery_durable.runtime.durable import Durable
from celery_durable.state import OrchestrationState, Page
from celery_durable.versioning import (
    VersionFailureStrategy,
    VersioningOptions,
    VersionMatchStrategy,
)

__version__ = "0.1.0"

__all__ = [
    "CleanEntityStorageResult", "CriticalSection", "DurableEntity", "EntityContext",
    "EntityInstanceId", "EntityMetadata", "EntityOperationError", "entity",
    "ActivityContext", "Durable", "DurableClient", "DurableError", "FailureDetails",
    "HistoryEvent", "InvalidInstanceIdError", "InvalidNameError", "MalformedMessageError",
    "NonDeterminismError", "OrchestrationAlreadyExistsError", "OrchestrationContext",
    "OrchestrationEndedError", "OrchestrationFailedError", "OrchestrationNotFoundError",
    "OrchestrationState", "OrchestrationStateError", "OrchestrationStatus", "Page",
    "PayloadError", "PayloadTooLargeError", "RetryPolicy",
    "Task", "TaskFailedError", "TransactionMismatchError", "UnknownNameError",
    "VersionFailureStrategy",
    "InvalidScheduleError", "Schedule", "ScheduleAlreadyExistsError", "ScheduleNotFoundError",
    "VersionMatchStrategy", "VersionMismatchError", "VersioningOptions", "activity", "orchestrator", "when_all",
    "when_any",
]
