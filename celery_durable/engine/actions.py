"""Actions: what an episode asks the runtime to carry out once its history is committed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from celery_durable.engine.history import utc


@dataclass(frozen=True)
class ScheduleActivity:
    """Run activity ``name`` with ``input``; report its result as task ``task_id``. A
    ``local`` one (``ctx.call_local_activity``) is run by the episode itself, before it
    commits."""

    task_id: int
    name: str
    input: Any
    attempt: int = 1
    local: bool = False


@dataclass(frozen=True)
class ScheduleTask:
    """Send Celery task ``name`` with its own ``args`` / ``kwargs`` (and Celery ``options``:
    queue, priority, countdown, ...); report its result or final failure as task ``task_id``."""

    task_id: int
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    attempt: int = 1


@dataclass(frozen=True)
class CreateTimer:
    """Deliver ``TimerFired(task_id)`` at ``fire_at`` (aware UTC)."""

    task_id: int
    fire_at: datetime


@dataclass(frozen=True)
class ScheduleSubOrchestration:
    """Start orchestration ``name`` as child ``instance_id``; report its end as task ``task_id``."""

    task_id: int
    name: str
    instance_id: str
    input: Any
    version: str | None = None


@dataclass(frozen=True)
class SendEvent:
    """Raise event ``name`` with ``data`` on instance ``instance_id`` (``ctx.send_event``);
    ``task_id`` numbers the send, so that it is written once whatever replays it."""

    task_id: int
    instance_id: str
    name: str
    data: Any = None


@dataclass(frozen=True)
class TerminateOrchestration:
    """Terminate another instance (a running child, when a parent is terminated recursively)."""

    instance_id: str
    output: Any = None
    recursive: bool = True


@dataclass(frozen=True)
class CallEntity:
    """Run ``operation`` on entity ``entity_id`` (``@name@key``); report its result as task
    ``task_id``."""

    task_id: int
    entity_id: str
    operation: str
    input: Any = None


@dataclass(frozen=True)
class SignalEntity:
    """Send ``operation`` to entity ``entity_id`` without waiting for it (no completion)."""

    task_id: int
    entity_id: str
    operation: str
    input: Any = None


@dataclass(frozen=True)
class LockEntities:
    """Lock ``entity_ids`` (canonical order) for this orchestration; report the grant as task
    ``task_id``."""

    task_id: int
    entity_ids: tuple[str, ...]


@dataclass(frozen=True)
class UnlockEntities:
    """Release the locks the critical section of lock task ``lock_task_id`` took (or asked for)."""

    task_id: int
    entity_ids: tuple[str, ...]
    lock_task_id: int


EntityAction = CallEntity | SignalEntity | LockEntities | UnlockEntities
Action = (ScheduleActivity | ScheduleTask | CreateTimer | ScheduleSubOrchestration | SendEvent
          | TerminateOrchestration | EntityAction)
Scheduling = (ScheduleActivity | ScheduleTask | CreateTimer | ScheduleSubOrchestration | SendEvent
              | EntityAction)
ENTITY_ACTIONS = (CallEntity, SignalEntity, LockEntities, UnlockEntities)

_TYPES: dict[str, type] = {cls.__name__: cls for cls in
                           (ScheduleActivity, ScheduleTask, CreateTimer, ScheduleSubOrchestration,
                            SendEvent, TerminateOrchestration, *ENTITY_ACTIONS)}


def action_to_json(action: Action) -> dict[str, Any]:
    data = asdict(action)
    if isinstance(action, CreateTimer):
        data["fire_at"] = action.fire_at.isoformat()
    elif isinstance(action, ScheduleActivity) and not action.local:
        del data["local"]  # the form of the activities that came before local ones
    return {"type": type(action).__name__, **data}


def action_from_json(data: dict[str, Any]) -> Action:
    fields = dict(data)
    cls = _TYPES.get(fields.pop("type", ""))
    if cls is None:
        raise ValueError(f"unknown action type {data.get('type')!r}")
    if cls is CreateTimer:
        fields["fire_at"] = utc(datetime.fromisoformat(fields["fire_at"]))
    if "entity_ids" in fields:
        fields["entity_ids"] = tuple(fields["entity_ids"])
    action: Action = cls(**fields)
    return action


def is_local_event(kind: str, data: Any) -> bool:
    """Whether a ``TaskScheduled`` event (its ``kind`` and ``data``) records a local activity
    (``ctx.call_local_activity``: run in the episode's process, no Celery task)."""
    return kind == "TaskScheduled" and isinstance(data, dict) and bool(data.get("local"))


def scheduled_task_of(task_id: int, name: str, data: Any) -> ScheduleTask | None:
    """The `ScheduleTask` a ``TaskScheduled`` event of ``ctx.call_task`` records (its data has
    ``celery_task: true``), or None for an activity's."""
    if not isinstance(data, dict) or not data.get("celery_task"):
        return None
    return ScheduleTask(task_id, name, list(data.get("args") or []),
                        dict(data.get("kwargs") or {}), dict(data.get("options") or {}),
                        int(data.get("attempt") or 1))
