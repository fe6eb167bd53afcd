"""An orchestration's entity calls, signals and critical sections, in the pure engine: what
history records, the actions, canonical lock order, the rules inside a critical section, and
the locks released when the section exits or the orchestration fails, is terminated or
continues as new. Every run goes through the replay driver (warm, cold and fresh replays
agree, every prefix replays)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from replay_driver import T0, Driver, raised, started, terminate

from celery_durable import EntityInstanceId, EntityOperationError, TaskFailedError
from celery_durable.engine import HistoryEvent, action_from_json, action_to_json
from celery_durable.engine import history as h
from celery_durable.engine.actions import CallEntity, LockEntities, SignalEntity, UnlockEntities
from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.status import OrchestrationStatus

A, B, C = EntityInstanceId("account", "a"), EntityInstanceId("account", "b"), \
    EntityInstanceId("Account", "c")


def completed(task_id: int, result: Any = None) -> HistoryEvent:
    return HistoryEvent(h.UNSEQUENCED, h.ENTITY_OPERATION_COMPLETED, T0, task_id, None, result)


def op_failed(task_id: int) -> HistoryEvent:
    return HistoryEvent(h.UNSEQUENCED, h.ENTITY_OPERATION_FAILED, T0, task_id, None,
                        FailureDetails("no", "ValueError").to_json())


def granted(task_id: int) -> HistoryEvent:
    return HistoryEvent(h.UNSEQUENCED, h.ENTITY_LOCK_GRANTED, T0, task_id, None, {})


def entity_actions(driver: Driver) -> list[Any]:
    return [a for r in driver.results for a in r.actions]


def test_call_and_signal_record_history_and_results_reach_the_code() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        value = yield ctx.call_entity(A, "get")
        ctx.signal_entity("@account@b", "deposit", value)
        try:
            yield ctx.call_entity(A, "boom", {"x": 1})
        except TaskFailedError as exc:
            return [value, exc.details.error_type]

    d = Driver(orch)
    d.run(started())
    assert entity_actions(d) == [CallEntity(0, "@account@a", "get", None)]
    d.run(completed(0, 7))
    assert entity_actions(d)[1:] == [SignalEntity(1, "@account@b", "deposit", 7),
                                     CallEntity(2, "@account@a", "boom", {"x": 1})]
    d.run(op_failed(2))
    assert d.last.status is OrchestrationStatus.COMPLETED and d.last.output == [7, "ValueError"]
    kinds = [e.kind for e in d.history]
    assert kinds[:3] == [h.EXECUTION_STARTED, h.ENTITY_OPERATION_CALLED,
                         h.ENTITY_OPERATION_COMPLETED]
    assert h.ENTITY_OPERATION_SIGNALED in kinds and h.ENTITY_OPERATION_FAILED in kinds
    d.check_prefixes()
    for event in d.history:  # the JSON forms round-trip
        assert HistoryEvent.from_json(json.loads(json.dumps(event.to_json()))) == event
    for action in entity_actions(d):
        assert action_from_json(json.loads(json.dumps(action_to_json(action)))) == action


def _section(ctx: Any, ids: list[Any]) -> Any:
    with (yield ctx.lock_entities(ids)) as section:
        first = yield ctx.call_entity(ids[0], "balance")
        yield ctx.call_entity(ids[-1], "deposit", first)
    assert section.released
    return first


def test_locks_are_taken_in_canonical_order_and_released_when_the_block_exits() -> None:
    d = Driver(lambda ctx, _: _section(ctx, [C, B, A, B]))
    d.run(started())
    ids = ("@account@a", "@account@b", "@account@c")
    assert entity_actions(d) == [LockEntities(0, ids)]
    d.run(granted(0))
    assert entity_actions(d)[-1] == CallEntity(1, "@account@c", "balance", None)
    d.run(completed(1, 5))
    d.run(completed(2))
    assert entity_actions(d)[-1] == UnlockEntities(3, ids, 0)
    assert d.last.status is OrchestrationStatus.COMPLETED and d.last.output == 5
    kinds = [e.kind for e in d.history]
    assert kinds.index(h.ENTITY_UNLOCK_SENT) < kinds.index(h.EXECUTION_COMPLETED)
    d.check_prefixes()


@pytest.mark.parametrize("ending", ["fails", "terminated", "continues as new"])
def test_an_orchestration_that_ends_inside_its_section_releases_the_locks(ending: str) -> None:
    def orch(ctx: Any, _: Any) -> Any:
        with (yield ctx.lock_entities([A, B])):
            yield ctx.call_entity(A, "deposit", 1)
            if ending == "fails":
                raise RuntimeError("broke while holding the locks")
            if ending == "continues as new":
                ctx.continue_as_new(None)
            yield ctx.wait_for_external_event("never")

    d = Driver(orch)
    d.run(started())
    d.run(granted(0))
    result = d.run(completed(1)) if ending != "terminated" else None
    if ending == "terminated":
        d.run(completed(1))
        result = d.run(terminate("stop"))
    assert result is not None
    unlocks = [a for a in result.actions if isinstance(a, UnlockEntities)]
    assert unlocks == [UnlockEntities(unlocks[0].task_id, ("@account@a", "@account@b"), 0)]
    if ending != "continues as new":
        d.check_prefixes()


def test_an_orchestration_ending_while_its_lock_request_travels_releases_it_too() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.when_any([ctx.lock_entities([A]), ctx.wait_for_external_event("stop")])
        raise RuntimeError("gave up waiting")

    d = Driver(orch)
    d.run(started())
    result = d.run(raised("stop"))
    assert result.status is OrchestrationStatus.FAILED
    assert [a for a in result.actions if isinstance(a, UnlockEntities)] == \
        [UnlockEntities(1, ("@account@a",), 0)]


@pytest.mark.parametrize("misuse, rule", [
    (lambda ctx: ctx.call_entity(C, "get"), "call only locked entities"),
    (lambda ctx: ctx.signal_entity(A, "get"), "cannot signal"),
    (lambda ctx: ctx.lock_entities([C]), "another critical section"),
    (lambda ctx: ctx.call_sub_orchestrator("child"), "sub-orchestration"),
    (lambda ctx: [ctx.call_entity(A, "get"), ctx.call_entity(A, "get")], "still pending"),
])
def test_critical_section_rules(misuse: Any, rule: str) -> None:
    def orch(ctx: Any, _: Any) -> Any:
        with (yield ctx.lock_entities([A, B])):
            misuse(ctx)
            yield ctx.call_entity(B, "get")

    d = Driver(orch)
    d.run(started())
    result = d.run(granted(0))
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None and result.failure.error_type == "EntityOperationError"
    assert rule in result.failure.message
    assert isinstance(result.actions[-1], UnlockEntities)  # the failure released the locks


def test_calls_before_the_grant_are_refused_and_ids_are_checked() -> None:
    def orch(ctx: Any, _: Any) -> Any:
        ctx.lock_entities([A])
        yield ctx.call_entity(A, "get")

    d = Driver(orch)
    result = d.run(started())
    assert result.failure is not None and "not held yet" in result.failure.message
    for bad in ("account@a", "@account", "@@a", 3):
        with pytest.raises(Exception, match="entity"):
            EntityInstanceId.parse(bad)  # type: ignore[arg-type]
    with pytest.raises(EntityOperationError):
        from celery_durable.engine.entity_calls import canonical_ids
        canonical_ids([])
    assert str(C) == "@account@c" and sorted([C, A, B]) == [A, B, C]


def test_replay_that_calls_another_entity_is_a_non_determinism_error() -> None:
    from celery_durable.engine import Orchestration

    def before(ctx: Any, _: Any) -> Any:
        return (yield ctx.call_entity(A, "get"))

    def after(ctx: Any, _: Any) -> Any:
        return (yield ctx.call_entity(B, "get"))

    d = Driver(before)
    d.run(started())
    changed = Orchestration(after, "inst")
    changed.replay(d.history)
    result = changed.run([], T0)
    assert result.status is OrchestrationStatus.FAILED
    assert result.failure is not None and result.failure.error_type == "NonDeterminismError"
    assert "@account@a" in result.failure.message and "@account@b" in result.failure.message


def test_a_lock_that_history_never_recorded_is_not_released() -> None:
    """A replay that diverges before the lock request was recorded fails the instance without
    an unlock for a lock no entity ever saw (it would wait in their inboxes for ever)."""
    from celery_durable.engine import Orchestration

    def before(ctx: Any, _: Any) -> Any:
        return (yield ctx.call_entity(A, "get"))

    def after(ctx: Any, _: Any) -> Any:
        with (yield ctx.lock_entities([A])):
            pass

    d = Driver(before)
    d.run(started())
    changed = Orchestration(after, "inst")
    changed.replay(d.history)
    result = changed.run([], T0)
    assert result.status is OrchestrationStatus.FAILED
    assert not [a for a in result.actions if isinstance(a, (LockEntities, UnlockEntities))]
