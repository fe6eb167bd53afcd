"""History events: the append-only record an orchestration is replayed from.

Every event is one frozen ``HistoryEvent(seq, kind, timestamp, task_id, name, data)``. The kind
says how to read ``data``; the stable JSON form (``to_json`` / ``from_json``) is what the store
keeps. Events waiting in an instance's inbox use the same type; their ``seq`` is assigned (``-1``
until then) when the executor appends them to history.

Kinds and their fields (``data`` is always JSON):

=========================  =========  ===============  ==============================================
kind                       task_id    name             data
=========================  =========  ===============  ==============================================
ExecutionStarted           -          orchestrator     {input, version, parent_instance_id,
                                                        parent_task_id, generation}
TaskScheduled              task id    activity         {input, attempt}
                                      or Celery task   (ctx.call_task: {celery_task: true, args,
                                                        kwargs, options, attempt})
TaskCompleted              task id    -                result
TaskFailed                 task id    -                FailureDetails JSON
TimerCreated               task id    "retry" or None  {fire_at}
TimerFired                 task id    -                {fire_at}
SubOrchestrationCreated    task id    orchestrator     {instance_id, input, version}
SubOrchestrationCompleted  task id    -                result
SubOrchestrationFailed     task id    -                FailureDetails JSON
EventRaised                -          event name       event data
EventSent                  task id    event name       {instance_id, data} (ctx.send_event)
ExecutionRewound           -          -                {reason, previous_execution_id,
                                                        removed: [{kind, task_id, name,
                                                        message}], events_removed}
ExecutionSuspended         -          -                {reason}
ExecutionResumed           -          -                {reason}
ExecutionTerminated        -          -                {output, recursive}
ContinuedAsNew             -          -                {input, version}
ExecutionCompleted         -          -                {status, output, failure}
EntityOperationCalled      task id    entity id        {operation, input}
EntityOperationSignaled    task id    entity id        {operation, input}
EntityLockRequested        task id    -                {entities}
EntityUnlockSent           task id    -                {entities, lock_task_id}
EntityOperationCompleted   task id    -                result
EntityOperationFailed      task id    -                FailureDetails JSON
EntityLockGranted          task id    -                {entities}
=========================  =========  ===============  ==============================================

The ``Entity*`` kinds of the first four rows are also what waits in an entity's inbox (with the
caller's id in ``data``; see `celery_durable.engine.entity_messages`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from celery_durable.engine.failure import FailureDetails

EXECUTION_STARTED = "ExecutionStarted"
TASK_SCHEDULED = "TaskScheduled"
TASK_COMPLETED = "TaskCompleted"
TASK_FAILED = "TaskFailed"
TIMER_CREATED = "TimerCreated"
TIMER_FIRED = "TimerFired"
SUB_ORCHESTRATION_CREATED = "SubOrchestrationCreated"
SUB_ORCHESTRATION_COMPLETED = "SubOrchestrationCompleted"
SUB_ORCHESTRATION_FAILED = "SubOrchestrationFailed"
EVENT_RAISED = "EventRaised"
EVENT_SENT = "EventSent"
EXECUTION_REWOUND = "ExecutionRewound"
EXECUTION_SUSPENDED = "ExecutionSuspended"
EXECUTION_RESUMED = "ExecutionResumed"
EXECUTION_TERMINATED = "ExecutionTerminated"
CONTINUED_AS_NEW = "ContinuedAsNew"
EXECUTION_COMPLETED = "ExecutionCompleted"
# entities (see engine/entity_calls.py): what an orchestration sends, and what comes back
ENTITY_OPERATION_CALLED = "EntityOperationCalled"
ENTITY_OPERATION_SIGNALED = "EntityOperationSignaled"
ENTITY_LOCK_REQUESTED = "EntityLockRequested"
ENTITY_UNLOCK_SENT = "EntityUnlockSent"
ENTITY_OPERATION_COMPLETED = "EntityOperationCompleted"
ENTITY_OPERATION_FAILED = "EntityOperationFailed"
ENTITY_LOCK_GRANTED = "EntityLockGranted"
ENTITY_SCHEDULING_KINDS = frozenset({ENTITY_OPERATION_CALLED, ENTITY_OPERATION_SIGNALED,
                                     ENTITY_LOCK_REQUESTED, ENTITY_UNLOCK_SENT})
ENTITY_COMPLETION_KINDS = frozenset({ENTITY_OPERATION_COMPLETED, ENTITY_OPERATION_FAILED,
                                     ENTITY_LOCK_GRANTED})

#: Events the orchestrator writes when it schedules something (outputs of an episode).
SCHEDULING_KINDS = frozenset({TASK_SCHEDULED, TIMER_CREATED, SUB_ORCHESTRATION_CREATED,
                              EVENT_SENT}) | ENTITY_SCHEDULING_KINDS
#: Events that complete a scheduled task (inputs that arrive through the inbox).
COMPLETION_KINDS = frozenset({TASK_COMPLETED, TASK_FAILED, TIMER_FIRED,
                              SUB_ORCHESTRATION_COMPLETED, SUB_ORCHESTRATION_FAILED}) \
    | ENTITY_COMPLETION_KINDS
ALL_KINDS = frozenset(
    {EXECUTION_STARTED, EVENT_RAISED, EXECUTION_SUSPENDED, EXECUTION_RESUMED,
     EXECUTION_TERMINATED, CONTINUED_AS_NEW, EXECUTION_COMPLETED, EXECUTION_REWOUND}
) | SCHEDULING_KINDS | COMPLETION_KINDS

UNSEQUENCED = -1


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive datetimes are read as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class HistoryEvent:
    """One event of an orchestration's history (see the module docstring for each kind)."""

    seq: int
    kind: str
    timestamp: datetime
    task_id: int | None = None
    name: str | None = None
    data: Any = None

    def with_seq(self, seq: int, timestamp: datetime | None = None) -> HistoryEvent:
        return replace(self, seq=seq, timestamp=self.timestamp if timestamp is None else timestamp)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "timestamp": self.timestamp.isoformat(),
                "task_id": self.task_id, "name": self.name, "data": self.data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEvent:
        kind = data["kind"]
        if kind not in ALL_KINDS:
            raise ValueError(f"unknown history event kind {kind!r}")
        return cls(seq=int(data.get("seq", UNSEQUENCED)), kind=kind,
                   timestamp=utc(datetime.fromisoformat(data["timestamp"])),
                   task_id=data.get("task_id"), name=data.get("name"), data=data.get("data"))

    def describe(self) -> str:
        """A short human description, used in error messages: ``TaskScheduled 'charge' (task 3)``."""
        parts = [self.kind]
        if self.name is not None:
            parts.append(repr(self.name))
        if self.task_id is not None:
            parts.append(f"(task {self.task_id})")
        if self.seq >= 0:
            parts.append(f"at seq {self.seq}")
        return " ".join(parts)


# -- constructors for the events that arrive through an instance's inbox ------------------------

def _new(kind: str, timestamp: datetime, task_id: int | None = None, name: str | None = None,
         data: Any = None) -> HistoryEvent:
    return HistoryEvent(UNSEQUENCED, kind, utc(timestamp), task_id, name, data)


def execution_started(name: str, input: Any, timestamp: datetime, *, version: str | None = None,
                      parent_instance_id: str | None = None, parent_task_id: int | None = None,
                      generation: int = 0) -> HistoryEvent:
    return _new(EXECUTION_STARTED, timestamp, name=name,
                data={"input": input, "version": version, "parent_instance_id": parent_instance_id,
                      "parent_task_id": parent_task_id, "generation": generation})


def task_completed(task_id: int, result: Any, timestamp: datetime) -> HistoryEvent:
    return _new(TASK_COMPLETED, timestamp, task_id=task_id, data=result)


def task_failed(task_id: int, failure: FailureDetails, timestamp: datetime) -> HistoryEvent:
    return _new(TASK_FAILED, timestamp, task_id=task_id, data=failure.to_json())


def timer_fired(task_id: int, fire_at: datetime, timestamp: datetime) -> HistoryEvent:
    return _new(TIMER_FIRED, timestamp, task_id=task_id, data={"fire_at": utc(fire_at).isoformat()})


def sub_orchestration_completed(task_id: int, result: Any, timestamp: datetime) -> HistoryEvent:
    return _new(SUB_ORCHESTRATION_COMPLETED, timestamp, task_id=task_id, data=result)


def sub_orchestration_failed(task_id: int, failure: FailureDetails,
                             timestamp: datetime) -> HistoryEvent:
    return _new(SUB_ORCHESTRATION_FAILED, timestamp, task_id=task_id, data=failure.to_json())


def event_raised(name: str, data: Any, timestamp: datetime) -> HistoryEvent:
    return _new(EVENT_RAISED, timestamp, name=name, data=data)


def execution_suspended(timestamp: datetime, reason: str | None = None) -> HistoryEvent:
    return _new(EXECUTION_SUSPENDED, timestamp, data={"reason": reason})


def execution_resumed(timestamp: datetime, reason: str | None = None) -> HistoryEvent:
    return _new(EXECUTION_RESUMED, timestamp, data={"reason": reason})


def execution_terminated(timestamp: datetime, output: Any = None,
                         recursive: bool = True) -> HistoryEvent:
    return _new(EXECUTION_TERMINATED, timestamp, data={"output": output, "recursive": recursive})


def execution_rewound(timestamp: datetime, reason: str | None, previous_execution_id: str,
                      removed: list[dict[str, Any]], events_removed: int) -> HistoryEvent:
    """The record of a rewind (`celery_durable.engine.rewind`): replay passes over it."""
    return _new(EXECUTION_REWOUND, timestamp,
                data={"reason": reason, "previous_execution_id": previous_execution_id,
                      "removed": removed, "events_removed": events_removed})
