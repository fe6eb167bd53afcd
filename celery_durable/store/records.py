"""The store's values: what goes in (new instances, inbox items, episode commits) and what comes
out (instance records, inbox rows, timers), and their conversion to and from table rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import RowMapping

from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.history import HistoryEvent, utc
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import InvalidInstanceIdError
from celery_durable.payload import dumps, loads

MAX_ID_LEN = 256
MAX_NAME_LEN = 256
MAX_DEDUP_KEY_LEN = 300
#: task id of the timer row that starts an instance scheduled with ``start_at``
START_TIMER_ID = -1
#: the inbox dedup key prefixes of an activity's and a timer's completion: a second delivery of
#: the same completion is not inserted (see `completion_key`)
TASK_KEY, TIMER_KEY = "task", "timer"


def completion_key(prefix: str, execution_id: str, task_id: int) -> str:
    """The inbox dedup key of a completion: ``task:<execution>:<task id>`` for an activity,
    ``timer:...`` for a timer."""
    return f"{prefix}:{execution_id}:{task_id}"


def now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


def to_db_time(value: datetime) -> datetime:
    """An aware (or naive-UTC) datetime as the naive UTC the columns hold."""
    return utc(value).replace(tzinfo=None)


def from_db_time(value: datetime) -> datetime:
    """A naive-UTC column value as an aware UTC datetime."""
    return value.replace(tzinfo=timezone.utc)


def _opt_time(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _opt_json(text: str | None) -> Any:
    return None if text is None else loads(text)


def _opt_dumps(value: Any) -> str | None:
    return None if value is None else dumps(value)


def check_length(what: str, value: str, limit: int,
                 error: type[ValueError] = ValueError) -> None:
    """Refuse an empty value or one longer than its column (MySQL's INSERT IGNORE truncates)."""
    if not value or len(value) > limit:
        raise error(f"{what} must be 1 to {limit} characters long, got {len(value)}: "
                         f"{value[:60]!r}; use a shorter {what}")


@dataclass(frozen=True)
class NewInstance:
    """An orchestration instance to create (status PENDING, its start events in its inbox)."""

    instance_id: str
    name: str
    version: str | None = None
    input: Any = None
    parent_instance_id: str | None = None
    parent_task_id: int | None = None
    parent_execution_id: str | None = None
    tags: dict[str, str] | None = None
    execution_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    start_at: datetime | None = None
    created_at: datetime = field(default_factory=now)

    def to_row(self) -> dict[str, Any]:
        check_length("instance id", self.instance_id, MAX_ID_LEN, InvalidInstanceIdError)
        check_length("orchestrator name", self.name, MAX_NAME_LEN)
        created = to_db_time(self.created_at)
        return {
            "instance_id": self.instance_id, "name": self.name, "version": self.version,
            "status": OrchestrationStatus.PENDING.value, "input": _opt_dumps(self.input),
            "output": None, "failure": None, "custom_status": None,
            "parent_instance_id": self.parent_instance_id,
            "parent_task_id": self.parent_task_id,
            "parent_execution_id": self.parent_execution_id, "execution_id": self.execution_id,
            "generation": 0, "history_len": 0, "tags": _opt_dumps(self.tags),
            "created_at": created, "updated_at": created, "completed_at": None,
            "start_at": None if self.start_at is None else to_db_time(self.start_at),
        }


@dataclass(frozen=True)
class InstanceRecord:
    """An instance row: JSON columns decoded, datetimes aware UTC, ``failure`` as its JSON."""

    instance_id: str
    name: str
    version: str | None
    status: OrchestrationStatus
    input: Any
    output: Any
    failure: dict[str, Any] | None
    custom_status: Any
    parent_instance_id: str | None
    parent_task_id: int | None
    parent_execution_id: str | None
    execution_id: str
    generation: int
    history_len: int
    tags: dict[str, str] | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    start_at: datetime | None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @classmethod
    def from_row(cls, m: RowMapping) -> InstanceRecord:
        return cls(
            instance_id=m["instance_id"], name=m["name"], version=m["version"],
            status=OrchestrationStatus(m["status"]), input=_opt_json(m["input"]),
            output=_opt_json(m["output"]), failure=_opt_json(m["failure"]),
            custom_status=_opt_json(m["custom_status"]),
            parent_instance_id=m["parent_instance_id"], parent_task_id=m["parent_task_id"],
            parent_execution_id=m["parent_execution_id"],
            execution_id=m["execution_id"], generation=m["generation"],
            history_len=m["history_len"], tags=_opt_json(m["tags"]),
            created_at=from_db_time(m["created_at"]), updated_at=from_db_time(m["updated_at"]),
            completed_at=_opt_time(m["completed_at"]), start_at=_opt_time(m["start_at"]),
        )


@dataclass(frozen=True)
class InboxItem:
    """An event for an instance's inbox; ``dedup_key`` makes delivering it twice harmless.

    ``execution_id`` None means "for whichever execution is current" (e.g. external events).
    """

    dedup_key: str
    event: HistoryEvent
    execution_id: str | None = None

    def to_row(self, instance_id: str, created_at: datetime) -> dict[str, Any]:
        check_length("inbox dedup key", self.dedup_key, MAX_DEDUP_KEY_LEN)
        check_length("instance id", instance_id, MAX_ID_LEN, InvalidInstanceIdError)
        return {"instance_id": instance_id, "execution_id": self.execution_id,
                "dedup_key": self.dedup_key, "event": dumps(self.event.to_json()),
                "created_at": created_at}


@dataclass(frozen=True)
class Delivery:
    """What `Store.deliver_running` found: the instance's orchestrator and status, and whether
    the caller must send its wake-up. An instance that had ended received nothing."""

    name: str
    status: OrchestrationStatus
    claimed: bool


@dataclass(frozen=True)
class InboxRow:
    """An inbox row read in an episode; ``id`` is None for items passed to the episode directly."""

    id: int | None
    dedup_key: str
    execution_id: str | None
    event: HistoryEvent

    @classmethod
    def from_row(cls, m: Mapping[Any, Any]) -> InboxRow:
        return cls(id=m["id"], dedup_key=m["dedup_key"], execution_id=m["execution_id"],
                   event=HistoryEvent.from_json(loads(m["event"])))

    @classmethod
    def from_item(cls, item: InboxItem) -> InboxRow:
        return cls(id=None, dedup_key=item.dedup_key, execution_id=item.execution_id,
                   event=item.event)


@dataclass(frozen=True)
class TimerRow:
    """A durable timer: fires ``task_id`` of an execution at ``fire_at`` (aware UTC).

    In `EpisodeCommit.timers` only ``task_id`` and ``fire_at`` matter (the episode's instance and
    resulting execution are used); `Store.due_timers` fills in every field.
    """

    task_id: int
    fire_at: datetime
    instance_id: str = ""
    execution_id: str = ""
    dispatched_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        """``(instance_id, execution_id, task_id)``, as `Store.mark_timers_dispatched` takes."""
        return (self.instance_id, self.execution_id, self.task_id)

    @classmethod
    def from_row(cls, m: RowMapping) -> TimerRow:
        return cls(task_id=m["task_id"], fire_at=from_db_time(m["fire_at"]),
                   instance_id=m["instance_id"], execution_id=m["execution_id"],
                   dispatched_at=_opt_time(m["dispatched_at"]))


@dataclass(kw_only=True)
class EpisodeCommit:
    """Everything an episode writes, applied in the episode's transaction by `Episode.commit`.

    The instance's ``status``, ``output``, ``failure``, ``custom_status`` and ``completed_at``
    become exactly the given values (None clears). ``new_events`` carry their seq already
    (contiguous from the instance's ``history_len``, or from 0 after ``new_execution``).
    ``new_execution=(execution_id, generation)`` is continue-as-new: the current execution's
    history and timers are deleted first, and an ExecutionStarted among ``new_events`` sets the
    instance's input and version. ``timers`` are inserted for the resulting execution, after
    ``delete_timers`` removed all of the instance's timers. ``children`` are created as by
    `Store.create_instance` (ids refused because a live instance holds them are listed in
    `Episode.refused_children`); ``notify`` appends inbox items to other instances (idempotent).
    """

    status: OrchestrationStatus | str
    new_events: list[HistoryEvent] = field(default_factory=list)
    consumed_inbox_ids: list[int] = field(default_factory=list)
    output: Any = None
    failure: dict[str, Any] | FailureDetails | None = None
    custom_status: Any = None
    completed_at: datetime | None = None
    new_execution: tuple[str, int] | None = None
    timers: list[TimerRow] = field(default_factory=list)
    delete_timers: bool = False
    outbox: list[dict[str, Any]] = field(default_factory=list)
    children: list[tuple[NewInstance, list[HistoryEvent]]] = field(default_factory=list)
    notify: list[tuple[str, InboxItem]] = field(default_factory=list)

    def failure_dict(self) -> dict[str, Any] | None:
        if isinstance(self.failure, FailureDetails):
            return self.failure.to_json()
        return self.failure

    def failure_json(self) -> str | None:
        return _opt_dumps(self.failure_dict())

    def status_value(self) -> str:
        return OrchestrationStatus(self.status).value


def history_row(instance_id: str, execution_id: str, event: HistoryEvent) -> dict[str, Any]:
    """The history table row of ``event``."""
    return {"instance_id": instance_id, "execution_id": execution_id, "seq": event.seq,
            "kind": event.kind, "timestamp": to_db_time(event.timestamp),
            "task_id": event.task_id, "name": event.name, "data": dumps(event.data)}


def history_event(m: RowMapping) -> HistoryEvent:
    """The `HistoryEvent` of a history table row."""
    return HistoryEvent(seq=m["seq"], kind=m["kind"], timestamp=from_db_time(m["timestamp"]),
                        task_id=m["task_id"], name=m["name"], data=loads(m["data"]))
