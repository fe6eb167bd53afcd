"""The pure replay engine: no Celery, no SQL, no clock, no I/O."""

from celery_durable.engine.actions import (
    Action,
    CreateTimer,
    ScheduleActivity,
    ScheduleSubOrchestration,
    ScheduleTask,
    TerminateOrchestration,
    action_from_json,
    action_to_json,
)
from celery_durable.engine.context import OrchestrationContext
from celery_durable.engine.executor import ContinueAsNew, EpisodeResult, Orchestration, execute
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.retry import RetryPolicy
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.engine.tasks import Task, when_all, when_any

__all__ = [
    "Action", "ContinueAsNew", "CreateTimer", "EpisodeResult", "FailureDetails", "HistoryEvent",
    "Orchestration", "OrchestrationContext", "OrchestrationStatus", "RetryPolicy",
    "ScheduleActivity", "ScheduleSubOrchestration", "ScheduleTask", "Task",
    "TerminateOrchestration",
    "action_from_json", "action_to_json", "execute", "when_all", "when_any",
]
