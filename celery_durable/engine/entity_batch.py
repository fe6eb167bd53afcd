"""One entity episode's decisions (pure): which waiting requests run, in which order, and what
they produce.

Requests are taken in arrival order. A delayed signal waits until its time. While the entity is
locked, only the holder's requests run (its calls, and its unlock); everyone else's wait, in
order, until the unlock. A lock request takes the lock when it is free (and is then passed on to
the next entity of its section, or granted to the orchestration by the last one). An unlock of a
lock this entity does not hold yet waits for its lock request (an orchestration that ends while
its lock request travels releases every entity of the section at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery_durable.engine.entities import OperationOutcome
from celery_durable.engine.entity_messages import CALL, LOCK, SIGNAL, UNLOCK, EntityRequest

#: (request, state) -> outcome: runs one operation (`celery_durable.engine.entities.run_operation`)
Operate = Callable[[EntityRequest, Any], OperationOutcome]
Lock = tuple[str | None, str | None, int | None]


@dataclass
class Applied:
    """A request the batch processed; ``outcome`` for an operation."""

    request: EntityRequest
    outcome: OperationOutcome | None = None


@dataclass
class BatchResult:
    state: Any
    lock: Lock | None
    #: the lock's holder (orchestration id) for the store's ``locked_by``
    holder: str | None
    applied: list[Applied] = field(default_factory=list)
    #: lock requests granted here (passed on, or granted to their orchestration)
    granted: list[EntityRequest] = field(default_factory=list)
    #: requests left waiting (locked out, delayed, or beyond the batch's limit)
    waiting: int = 0


def run_batch(requests: Sequence[EntityRequest], state: Any, lock: Lock | None,
              holder: str | None, now: datetime, operate: Operate,
              limit: int = 200) -> BatchResult:
    """Process ``requests`` (arrival order) against ``state`` and ``lock``; at most ``limit``
    operations run (the rest wait for the next episode)."""
    result = BatchResult(state, lock, holder)
    pending = list(requests)
    operations = 0
    progress = True
    while progress and pending:
        progress = False
        for request in list(pending):
            decision = _decide(request, result, now)
            if decision is None:
                continue
            if decision in (CALL, SIGNAL):
                if operations >= limit:
                    break
                operations += 1
                outcome = operate(request, result.state)
                result.state = outcome.state
                result.applied.append(Applied(request, outcome))
            elif decision == LOCK:
                result.lock, result.holder = request.lock_id, request.caller
                result.granted.append(request)
                result.applied.append(Applied(request))
            else:
                result.lock = result.holder = None
                result.applied.append(Applied(request))
            pending.remove(request)
            progress = True
            if decision in (LOCK, UNLOCK):
                break  # the lock changed: what waited for it is looked at again, in order
    result.waiting = len(pending)
    return result


def _decide(request: EntityRequest, result: BatchResult, now: datetime) -> str | None:
    """What to do with ``request`` now (its kind), or None: it waits."""
    if request.signal_time is not None and request.signal_time > now:
        return None
    lock = result.lock
    if request.kind == UNLOCK:
        return UNLOCK if lock == request.lock_id else None
    if lock is not None and (request.kind == LOCK or request.caller != result.holder):
        return None  # locked by another orchestration: wait for its unlock
    return request.kind
