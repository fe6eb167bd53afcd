"""What waits in an entity's inbox: operations (called or signalled), lock requests and unlocks.

Each is an inbox event of an ``Entity*`` kind (`celery_durable.engine.history`) whose data names
its sender. An `EntityRequest` is its parsed form; the entity's episode reads them in arrival
order (`celery_durable.engine.entity_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent, utc

CALL = h.ENTITY_OPERATION_CALLED
SIGNAL = h.ENTITY_OPERATION_SIGNALED
LOCK = h.ENTITY_LOCK_REQUESTED
UNLOCK = h.ENTITY_UNLOCK_SENT


@dataclass(frozen=True)
class EntityRequest:
    """One request to an entity, as its inbox holds it.

    ``caller`` is the orchestration that sent it (None for a client's or an entity's signal);
    ``task_id`` its task (the lock task's for a lock request and an unlock); ``entities`` the
    ids a lock request locks, in canonical order; ``timer`` the timer of a delayed signal.
    """

    kind: str
    operation: str | None = None
    input: Any = None
    caller: str | None = None
    caller_execution: str | None = None
    caller_name: str | None = None
    task_id: int | None = None
    signal_time: datetime | None = None
    entities: tuple[str, ...] = ()
    timer: str | None = None
    #: the inbox row (consumed when the request is processed) and its dedup key
    row_id: int | None = None
    dedup_key: str = ""

    @property
    def lock_id(self) -> tuple[str | None, str | None, int | None]:
        """Which critical section a lock request or unlock belongs to."""
        return (self.caller, self.caller_execution, self.task_id)

    def describe(self) -> str:
        sender = f" from {self.caller}" if self.caller else ""
        if self.kind in (CALL, SIGNAL):
            return f"operation {self.operation!r}{sender}"
        return f"{'lock' if self.kind == LOCK else 'unlock'}{sender} (task {self.task_id})"

    def to_event(self, now: datetime) -> HistoryEvent:
        data: dict[str, Any] = {"operation": self.operation, "input": self.input,
                                "caller": self.caller, "caller_execution": self.caller_execution,
                                "caller_name": self.caller_name}
        if self.signal_time is not None:
            data["signal_time"] = utc(self.signal_time).isoformat()
        if self.entities:
            data["entities"] = list(self.entities)
        if self.timer is not None:
            data["timer"] = self.timer
        return HistoryEvent(h.UNSEQUENCED, self.kind, utc(now), self.task_id, None, data)

    @classmethod
    def from_event(cls, event: HistoryEvent, row_id: int | None = None,
                   dedup_key: str = "") -> EntityRequest:
        if event.kind not in h.ENTITY_SCHEDULING_KINDS:
            raise ValueError(f"{event.describe()} is not an entity request")
        data = event.data if isinstance(event.data, dict) else {}
        signal_time = data.get("signal_time")
        return cls(kind=event.kind, operation=data.get("operation"), input=data.get("input"),
                   caller=data.get("caller"), caller_execution=data.get("caller_execution"),
                   caller_name=data.get("caller_name"), task_id=event.task_id,
                   signal_time=None if signal_time is None
                   else utc(datetime.fromisoformat(signal_time)),
                   entities=tuple(data.get("entities") or ()), timer=data.get("timer"),
                   row_id=row_id, dedup_key=dedup_key)
