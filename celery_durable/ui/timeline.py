"""The timeline of an execution: one bar per activity attempt, timer, sub-orchestration and event
wait, read from its history (a pure function: no store, no clock, no web framework).

A bar runs from the event that scheduled the work to the event that completed it. Each attempt
of a retried activity has a task id of its own, so it is a bar of its own, and the waits between
attempts are timers named ``retry``. Work not completed yet is *open*: its bar ends at ``now``
(or when the instance ended). Event waits are not in history (only the events that arrive are):
`waits.event_waits` finds them by replaying the orchestrator, and they are passed in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent
from celery_durable.runtime.messages import activity_task_id

ACTIVITY = "activity"
TIMER = "timer"
RETRY_TIMER = "retry-timer"
SUB_ORCHESTRATION = "sub-orchestration"
EVENT_WAIT = "event-wait"
EVENT = "event"  # an event that arrived (a point in time, when no wait is known for it)
ORCHESTRATION = "orchestration"

_OUTCOMES = {h.TASK_COMPLETED: "completed", h.TASK_FAILED: "failed",
             h.TIMER_FIRED: "completed", h.SUB_ORCHESTRATION_COMPLETED: "completed",
             h.SUB_ORCHESTRATION_FAILED: "failed"}


@dataclass
class Bar:
    """One bar of the timeline; ``end`` None means still open (drawn up to the timeline's end)."""

    kind: str
    label: str
    start: datetime
    end: datetime | None = None
    outcome: str = "running"  # running, completed, failed, abandoned (or the instance's status)
    task_id: int | None = None
    attempt: int | None = None
    celery_task_id: str | None = None
    child_instance_id: str | None = None
    fire_at: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "start": self.start.isoformat(),
                "end": None if self.end is None else self.end.isoformat(),
                "outcome": self.outcome, "task_id": self.task_id, "attempt": self.attempt,
                "celery_task_id": self.celery_task_id,
                "child_instance_id": self.child_instance_id, "fire_at": self.fire_at}


@dataclass
class Timeline:
    """The bars of one execution between ``start`` and ``end``."""

    start: datetime
    end: datetime
    bars: list[Bar]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "bars": [bar.to_json() for bar in self.bars]}


def build_timeline(instance_id: str, execution_id: str, events: list[HistoryEvent],
                   now: datetime, ended_at: datetime | None = None,
                   final_status: str = "COMPLETED", waits: list[Bar] | None = None) -> Timeline:
    """The timeline of ``events`` (one execution's history, in order). Open bars end at
    ``ended_at`` when the instance has ended with ``final_status`` (their ``outcome`` is then
    "abandoned": the instance ended without them), else at ``now``. ``waits``: the event waits
    (`waits.event_waits`); without them, each event that arrived is a point."""
    bars: list[Bar] = []
    open_by_task: dict[int, Bar] = {}
    start = events[0].timestamp if events else now
    whole = Bar(ORCHESTRATION, events[0].name or "orchestration" if events else "orchestration",
                start)
    bars.append(whole)
    for event in events:
        bar = _scheduled_bar(instance_id, execution_id, event)
        if bar is not None:
            bars.append(bar)
            if event.task_id is not None:
                open_by_task[event.task_id] = bar
        elif event.kind in _OUTCOMES and event.task_id is not None:
            done = open_by_task.pop(event.task_id, None)
            if done is not None:
                done.end = event.timestamp
                done.outcome = _OUTCOMES[event.kind]
        elif event.kind == h.EXECUTION_COMPLETED:
            whole.end = event.timestamp
            whole.outcome = str((event.data or {}).get("status", "COMPLETED")).lower()
        elif event.kind == h.CONTINUED_AS_NEW:
            whole.end = event.timestamp
            whole.outcome = "completed"
        elif event.kind == h.EVENT_RAISED and waits is None:
            bars.append(Bar(EVENT, f"event {event.name!r} received", event.timestamp,
                            event.timestamp, "completed"))
    bars.extend(waits or [])
    end = ended_at or whole.end or now
    for bar in bars:
        if bar.end is None and ended_at is not None:
            bar.end = ended_at
            bar.outcome = "abandoned" if bar is not whole else final_status.lower()
    latest = max([end, *(b.end for b in bars if b.end is not None)])
    bars[1:] = sorted(bars[1:], key=lambda b: (b.start, b.task_id if b.task_id is not None
                                                else -1))
    return Timeline(start, latest, bars)


def _scheduled_bar(instance_id: str, execution_id: str, event: HistoryEvent) -> Bar | None:
    data = event.data if isinstance(event.data, dict) else {}
    if event.kind == h.TASK_SCHEDULED and event.task_id is not None:
        attempt = int(data.get("attempt") or 1)
        label = str(event.name) + (f" (attempt {attempt})" if attempt > 1 else "")
        if data.get("local"):  # run in the episode's process: no Celery task to link to
            return Bar(ACTIVITY, f"{label} (local)", event.timestamp, task_id=event.task_id,
                       attempt=attempt)
        return Bar(ACTIVITY, label, event.timestamp, task_id=event.task_id, attempt=attempt,
                   celery_task_id=activity_task_id(instance_id, execution_id, event.task_id,
                                                   attempt))
    if event.kind == h.TIMER_CREATED:
        fire_at = data.get("fire_at")
        kind = RETRY_TIMER if event.name == "retry" else TIMER
        label = "retry wait" if kind == RETRY_TIMER else "timer"
        return Bar(kind, label, event.timestamp, task_id=event.task_id, fire_at=fire_at)
    if event.kind == h.SUB_ORCHESTRATION_CREATED:
        child = data.get("instance_id")
        return Bar(SUB_ORCHESTRATION, str(event.name), event.timestamp, task_id=event.task_id,
                   child_instance_id=None if child is None else str(child))
    return None
