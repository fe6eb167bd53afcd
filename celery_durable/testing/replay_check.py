"""The replay check: does a recorded history still replay on the orchestrator code at hand?

A deploy changes orchestrator code while instances are running; each of them will be replayed
on the new code from its history. `check` replays one history on the engine (nothing is
written anywhere) and reports the first event where the code and the history part ways: what
history had and what the code did (the engine's `NonDeterminismError` names both), a history
that ends where the code goes on, or an end the code no longer reaches.

Histories come from the store or from ``celery -A proj durable export ID`` files (`HistoryExport`
JSON); `replay` is the one-call form for unit tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from celery_durable.engine import history as h
from celery_durable.engine.executor import Orchestration
from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import NonDeterminismError
from celery_durable.store import Store


@dataclass(frozen=True)
class HistoryExport:
    """One instance's recorded history, as ``celery durable export`` writes it."""

    instance_id: str
    name: str
    events: list[HistoryEvent]
    version: str | None = None
    status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "name": self.name, "version": self.version,
                "status": self.status, "history": [event.to_json() for event in self.events]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryExport:
        events = [HistoryEvent.from_json(event) for event in data["history"]]
        return cls(instance_id=str(data.get("instance_id") or "(unknown)"),
                   name=str(data.get("name") or _started_name(events)),
                   events=events, version=data.get("version"), status=data.get("status"))

    @classmethod
    def from_events(cls, events: list[HistoryEvent],
                    instance_id: str = "(unknown)") -> HistoryExport:
        return cls(instance_id=instance_id, name=_started_name(events), events=events)


def _started_name(events: list[HistoryEvent]) -> str:
    return next((e.name for e in events if e.kind == h.EXECUTION_STARTED and e.name), "")


def export_history(store: Store, instance_id: str) -> HistoryExport:
    """The current execution's history of ``instance_id`` (`OrchestrationNotFoundError` if
    there is no such instance)."""
    events = store.get_history(instance_id)
    record = store.get_instance(instance_id)
    assert record is not None  # get_history raised otherwise
    return HistoryExport(record.instance_id, record.name, events, record.version,
                         record.status.value)


def load_histories(source: Any) -> list[HistoryExport]:
    """Histories from JSON: an export document, a list of them, or a bare list of events; given
    as text, bytes, a parsed value or a path (`pathlib.Path`) to a file holding them."""
    if isinstance(source, PathLike):
        source = Path(source).read_text()
    if isinstance(source, (str, bytes)):
        try:
            source = json.loads(source)
        except ValueError as exc:
            raise ValueError(f"a history must be JSON (as celery durable export writes it): "
                             f"{exc}") from None
    if isinstance(source, dict) and "history" in source:
        return [HistoryExport.from_json(source)]
    if isinstance(source, list) and all(isinstance(item, HistoryEvent) for item in source):
        return [HistoryExport.from_events(list(source))]
    if isinstance(source, list) and all(isinstance(item, dict) for item in source):
        if all("history" in item for item in source):
            return [HistoryExport.from_json(item) for item in source]
        if all("kind" in item for item in source):
            return [HistoryExport.from_events([HistoryEvent.from_json(e) for e in source])]
    raise ValueError("expected a history export ({\"instance_id\", \"name\", \"history\": "
                     "[events]}), a list of them, or a list of history events; got "
                     f"{type(source).__name__}")


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one history on the code."""

    instance_id: str
    name: str
    #: how many history events were replayed
    events: int
    #: the first place code and history part ways (what history had, what the code did)
    divergence: str | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None


def check(export: HistoryExport, orchestrator: Any) -> ReplayResult:
    """Replay ``export`` on ``orchestrator`` (a decorated orchestrator or a plain generator
    function) without writing anything; report the first divergence, if any."""
    fn = _function(orchestrator)
    events = export.events
    result = ReplayResult(export.instance_id, export.name, len(events))
    if not events:
        return result  # not started yet: nothing recorded to disagree with
    state = Orchestration(fn, export.instance_id)
    state.replay(events)
    outcome = state.run([], events[-1].timestamp)
    divergence = None
    if outcome.failure is not None and \
            outcome.failure.error_type == NonDeterminismError.__name__ and outcome.new_events:
        divergence = outcome.failure.message
    elif outcome.new_events:
        divergence = _goes_on(events[-1], outcome.new_events[0], outcome.status)
    else:
        recorded = _recorded_end(events)
        if recorded is not None and recorded != outcome.status.value:
            detail = f" ({outcome.failure})" if outcome.failure is not None else ""
            divergence = (f"history ends the execution {recorded} but the code ends it "
                          f"{outcome.status.value}{detail}")
    return ReplayResult(export.instance_id, export.name, len(events), divergence)


def _goes_on(last: HistoryEvent, first_new: HistoryEvent,
             status: OrchestrationStatus) -> str:
    if first_new.kind == h.EXECUTION_COMPLETED:
        did = f"the code ends the execution there ({status.value})"
    else:
        did = f"the code goes on: {first_new.describe().rsplit(' at seq', 1)[0]}"
    return f"history ends with {last.describe()} but {did}"


def _recorded_end(events: list[HistoryEvent]) -> str | None:
    last = events[-1]
    if last.kind == h.EXECUTION_COMPLETED and isinstance(last.data, dict):
        status = last.data.get("status")
        return str(status) if status else None
    return None


def _function(orchestrator: Any) -> Any:
    definition = getattr(orchestrator, "definition", None)
    fn = getattr(definition, "fn", orchestrator)
    if not callable(fn):
        raise TypeError(f"expected an orchestrator (decorated or a plain generator function), "
                        f"got {orchestrator!r}")
    return fn


def replay(history: Any, orchestrator: Any) -> ReplayResult:
    """Replay one recorded history (see `load_histories` for the forms it takes) on
    ``orchestrator``; raise `NonDeterminismError` naming the first divergence, if any."""
    exports = load_histories(history)
    if len(exports) != 1:
        raise ValueError(f"replay() checks one history, got {len(exports)}: use "
                         "load_histories() and check() for several")
    result = check(exports[0], orchestrator)
    if result.divergence is not None:
        raise NonDeterminismError(f"instance {result.instance_id!r} ({result.name}) does not "
                                  f"replay on this code: {result.divergence}")
    return result
