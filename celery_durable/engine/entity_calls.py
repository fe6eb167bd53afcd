"""An orchestration's side of entities: calls, signals and critical sections (pure).

A critical section is the lock task's result: ``with (yield ctx.lock_entities([a, b])):``. The
locks are requested in canonical order (the ids' ``@name@key`` order), one entity after the
other, which is what keeps critical sections free of deadlocks. Inside a section the rules are
durabletask's: call only the locked entities (one call at a time each), signal none of them,
start no sub-orchestration and no other critical section. The section ends, and an
``UnlockEntities`` action releases every lock, when the ``with`` block exits, or when the
orchestration ends in any way while it holds (or waits for) the locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery_durable.engine.actions import UnlockEntities
from celery_durable.engine.entity_id import entity_id_of
from celery_durable.errors import EntityOperationError

if TYPE_CHECKING:
    from celery_durable.engine.context import OrchestrationContext


class CriticalSection:
    """The locks one orchestration holds on a set of entities (a context manager)."""

    def __init__(self, ctx: OrchestrationContext, lock_task_id: int,
                 entity_ids: tuple[str, ...]) -> None:
        self._ctx = ctx
        self.lock_task_id = lock_task_id
        self.entity_ids = entity_ids
        #: lock requested in history (an unlock is owed), and granted (the lock task completed)
        self.recorded = False
        self.granted = False
        #: locked entities with a call still pending (each may have one at a time)
        self.busy: set[str] = set()
        self.released = False

    def __enter__(self) -> CriticalSection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Release the locks now (the ``with`` block's exit does it)."""
        if not self.released:
            self.released = True
            self._ctx._end_critical_section(self)

    def unlock_action(self, task_id: int) -> UnlockEntities:
        return UnlockEntities(task_id, self.entity_ids, self.lock_task_id)

    def __repr__(self) -> str:
        state = "released" if self.released else "held" if self.granted else "requested"
        return f"<CriticalSection {', '.join(self.entity_ids)} ({state})>"


def canonical_ids(entity_ids: Iterable[Any]) -> tuple[str, ...]:
    """The ids to lock: each once, in canonical order (what makes sections deadlock-free)."""
    ids = sorted({str(entity_id_of(e)) for e in entity_ids})
    if not ids:
        raise EntityOperationError("lock_entities needs at least one entity id")
    return tuple(ids)


def check_call(section: CriticalSection | None, entity_id: str, one_way: bool) -> None:
    """Refuse a call or signal the rules of critical sections forbid (see the module doc)."""
    if section is None or section.released:
        return
    if one_way:
        if entity_id in section.entity_ids:
            raise EntityOperationError(
                f"cannot signal {entity_id}, which this orchestration has locked: inside a "
                "critical section, use ctx.call_entity on a locked entity")
        return
    if not section.granted:
        raise EntityOperationError(
            "yield the lock_entities task before calling entities: the locks are not held yet")
    if entity_id not in section.entity_ids:
        raise EntityOperationError(
            f"cannot call {entity_id} inside a critical section that locks "
            f"{', '.join(section.entity_ids)}: call only locked entities there, or lock it too")
    if entity_id in section.busy:
        raise EntityOperationError(
            f"a call to {entity_id} is still pending: inside a critical section, yield a call "
            "to a locked entity before calling it again")


def check_no_section(section: CriticalSection | None, what: str) -> None:
    if section is not None and not section.released:
        raise EntityOperationError(
            f"cannot {what} inside a critical section (it holds "
            f"{', '.join(section.entity_ids)}); do it after the with block")
