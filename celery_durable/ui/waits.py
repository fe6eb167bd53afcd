"""Event waits of an execution, found by replaying its orchestrator.

History records the events that arrive (``EventRaised``), not when the orchestrator started to
wait for them. The dashboard's process knows the orchestrators (it loads the app with ``-A``), so
it replays the history one event at a time, as a worker does (replay runs no activity and writes
nothing), and notes after each event which ``wait_for_external_event`` tasks are open: a wait
starts at the event after which its task appeared and ends at the event that completed it.
(It reads the engine's open waits, ``ctx._event_waiters``: the engine has no public view of them.)
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery_durable.engine.executor import Orchestration
from celery_durable.engine.history import HistoryEvent
from celery_durable.errors import NonDeterminismError
from celery_durable.ui.timeline import EVENT_WAIT, Bar

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)


def event_waits(durable: Durable, instance_id: str, name: str,
                events: list[HistoryEvent]) -> list[Bar] | None:
    """The event-wait bars of ``events``, or None when they cannot be known (the orchestrator
    is not registered in this process, or its code does not replay this history)."""
    definition = durable.registry.orchestrators.get(name)
    if definition is None:
        return None
    orchestration = Orchestration(definition.fn, instance_id,
                                  default_version=durable.default_version,
                                  version_of=durable.version_for)
    waiting: dict[int, tuple[Any, Bar]] = {}
    bars: list[Bar] = []
    try:
        for event in events:
            orchestration.replay([event])
            failure = getattr(orchestration, "_failure", None)
            if failure is not None and failure.error_type == NonDeterminismError.__name__:
                return None  # the code does not match this history (it changed since)
            _note(orchestration, event.timestamp, waiting, bars)
    except Exception:  # user code that raises on replay: show the timeline without waits
        logger.debug("replaying %s for its event waits failed", instance_id, exc_info=True)
        return None
    return bars


def _note(orchestration: Orchestration, at: datetime, waiting: dict[int, tuple[Any, Bar]],
          bars: list[Bar]) -> None:
    """Open a bar for each new waiting task; close the bars of tasks that completed."""
    for key, (task, bar) in list(waiting.items()):
        if task.is_complete:
            bar.end, bar.outcome = at, "completed"
            del waiting[key]
    for event_name, tasks in orchestration.ctx._event_waiters.items():
        for task in tasks:
            if id(task) not in waiting and not task.is_complete:
                bar = Bar(EVENT_WAIT, f"wait for {event_name!r}", at)
                waiting[id(task)] = (task, bar)
                bars.append(bar)
