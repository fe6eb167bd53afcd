"""Rewind: what a failed execution's history becomes so that it runs again from its failures.

Pure (no SQL, no clock): the store applies the plan (`celery_durable.store.rewind`).

A rewind cuts the history just before its first failed result (``TaskFailed`` or
``SubOrchestrationFailed``; when the orchestrator's own code raised without one, just before the
last event it received). What came before stays exactly as it was, followed by an
``ExecutionRewound`` event that records why and what was removed; replay passes over that event,
so the rewound history is an ordinary linear history that the replay check (``durable replay``)
checks like any other. From the removed tail, the successful results of work scheduled before the
cut (and the external events received) are fed again as new events: that work does not run
again. What the code scheduled before the cut and has no result then (the failed activities,
Celery tasks and sub-orchestrations) runs again; failed sub-orchestrations are rewound in turn.
Work the code scheduled only after the first failure (retries, compensation) is scheduled anew
if the code asks for it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.history import HistoryEvent

_FAILED_RESULTS = (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED)
_SUCCESSES = (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED, h.TIMER_FIRED)
_INPUT_KINDS = h.COMPLETION_KINDS | {h.EXECUTION_STARTED, h.EVENT_RAISED,
                                     h.EXECUTION_SUSPENDED, h.EXECUTION_RESUMED}


@dataclass
class RewindPlan:
    """The rewound history and what must happen for it to go on."""

    #: the events kept, unchanged (seq 0 .. len - 1)
    kept: list[HistoryEvent]
    #: events of the removed tail fed again as new events (successful results of work
    #: scheduled before the cut, external events), in their order
    refeed: list[HistoryEvent]
    #: scheduling events of the kept part whose work has no result any more: it runs again
    reopened: list[HistoryEvent]
    #: ids of the failed sub-orchestrations whose failure was removed (rewound in turn)
    failed_children: list[str]
    #: what was removed: ``{kind, task_id, name, message}`` of each failed result
    removed: list[dict[str, Any]] = field(default_factory=list)
    #: how many events the removed tail held
    events_removed: int = 0


def plan_rewind(history: Sequence[HistoryEvent]) -> RewindPlan:
    """The rewind of a failed execution's ``history`` (its last event ``ExecutionCompleted``
    with status FAILED); ``ValueError`` if there is nothing to rewind."""
    events = list(history)
    if not events or events[-1].kind != h.EXECUTION_COMPLETED or \
            (events[-1].data or {}).get("status") != "FAILED":
        raise ValueError("only a history that ends with the execution's failure can be "
                         "rewound")
    cut = next((i for i, e in enumerate(events) if e.kind in _FAILED_RESULTS), None)
    if cut is None:  # the code raised by itself: run it again from the last event it received
        cut = max((i for i, e in enumerate(events) if e.kind in _INPUT_KINDS), default=0)
    kept, tail = events[:cut], events[cut:]
    names = {e.task_id: e.name for e in events if e.kind in h.SCHEDULING_KINDS}
    scheduled: dict[int, HistoryEvent] = {}
    done: set[int] = set()
    for event in kept:
        if event.task_id is None:
            continue
        if event.kind in h.SCHEDULING_KINDS and event.kind != h.EVENT_SENT:
            scheduled[event.task_id] = event
        elif event.kind in h.COMPLETION_KINDS:
            done.add(event.task_id)
    refeed: list[HistoryEvent] = []
    removed: list[dict[str, Any]] = []
    failed_children: list[str] = []
    for event in tail:
        open_here = event.task_id in scheduled and event.task_id not in done
        if event.kind in _SUCCESSES and open_here:
            assert event.task_id is not None
            done.add(event.task_id)
            refeed.append(event)
        elif event.kind in (h.EVENT_RAISED,) or (event.kind == h.EXECUTION_STARTED and not kept):
            refeed.append(event)
        elif event.kind in _FAILED_RESULTS:
            source = scheduled.get(event.task_id) if event.task_id is not None else None
            removed.append({"kind": event.kind, "task_id": event.task_id,
                            "name": names.get(event.task_id),
                            "message": (event.data or {}).get("message")})
            if event.kind == h.SUB_ORCHESTRATION_FAILED and open_here and source is not None:
                child = (source.data or {}).get("instance_id")
                if child and child not in failed_children:
                    failed_children.append(child)
    reopened = [event for task_id, event in sorted(scheduled.items()) if task_id not in done]
    return RewindPlan(kept, [e.with_seq(h.UNSEQUENCED) for e in refeed], reopened,
                      failed_children, removed, len(tail))
