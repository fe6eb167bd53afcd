"""A bounded, per-process cache of live orchestrator states (warm episodes skip the replay)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from celery_durable.engine.executor import Orchestration
from celery_durable.engine.history import HistoryEvent


class StateCache:
    """LRU of ``Orchestration`` objects keyed by instance id, valid for one (execution, length).

    An entry is taken out while an episode uses it and put back only after the episode's commit,
    so a failed episode never leaves a state that is ahead of the store.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, Orchestration]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def take(self, instance_id: str, execution_id: str, history_len: int) -> Orchestration | None:
        """The cached state of the instance's current execution, if it is not ahead of the
        store; it may be behind (another process ran the latest episodes): the caller then
        replays only the events it has not seen."""
        with self._lock:
            entry = self._entries.pop(instance_id, None)
            if entry is not None and entry[0] == execution_id and \
                    entry[1].history_length <= history_len:
                self.hits += 1
                return entry[1]
            self.misses += 1
            return None

    def waits_for_more(self, instance_id: str, execution_id: str | None,
                       event: HistoryEvent) -> bool:
        """Whether the cached state of the instance's execution ``execution_id`` is certain that
        ``event`` would not let its code go on (`Orchestration.would_resume`). The state may
        be behind the store, which has then seen more completions, never fewer open tasks: such
        an answer only delays the code by one wake-up."""
        with self._lock:
            entry = self._entries.get(instance_id)
            return entry is not None and entry[0] == execution_id and \
                not entry[1].would_resume(event)

    def put(self, instance_id: str, execution_id: str, state: Orchestration) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[instance_id] = (execution_id, state)
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def discard(self, instance_id: str) -> None:
        with self._lock:
            self._entries.pop(instance_id, None)

    def __len__(self) -> int:
        return len(self._entries)
