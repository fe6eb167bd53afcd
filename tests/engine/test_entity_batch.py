"""An entity episode's decisions (pure): arrival order, one operation at a time on the state
the previous one left, failed operations change nothing, delayed signals wait, and a lock lets
only its holder's requests through until its unlock (which may arrive before its request)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from replay_driver import T0

from celery_durable import EntityContext, EntityInstanceId
from celery_durable.engine.entities import run_operation
from celery_durable.engine.entity_batch import run_batch
from celery_durable.engine.entity_messages import CALL, LOCK, SIGNAL, UNLOCK, EntityRequest

E = EntityInstanceId("log", "k")


def log(ctx: EntityContext, input: Any) -> Any:
    if ctx.operation == "fail":
        ctx.set_state(["lost"])
        ctx.signal_entity("@other@x", "never")
        raise ValueError("refused")
    state = ctx.get_state(list, [])
    ctx.set_state([*state, input])
    ctx.signal_entity("@other@x", "saw", input)
    return len(state) + 1


def operate(request: EntityRequest, state: Any) -> Any:
    return run_operation(log, E, state, request.operation or "", request.input,
                         seed=request.dedup_key)


def op(value: Any, *, caller: str | None = None, operation: str = "append", **kw: Any
       ) -> EntityRequest:
    return EntityRequest(CALL if caller else SIGNAL, operation, value, caller=caller,
                         caller_execution="e" if caller else None, task_id=kw.pop("task_id", 1),
                         **kw)


def lock(holder: str, task_id: int = 9) -> EntityRequest:
    return EntityRequest(LOCK, caller=holder, caller_execution="e", task_id=task_id,
                         entities=(str(E),))


def unlock(holder: str, task_id: int = 9) -> EntityRequest:
    return EntityRequest(UNLOCK, caller=holder, caller_execution="e", task_id=task_id)


def applied_ops(result: Any) -> list[Any]:
    return [a.request.input for a in result.applied if a.outcome is not None]


def test_operations_run_in_arrival_order_each_on_the_state_the_previous_left() -> None:
    result = run_batch([op(1), op(2, caller="o1"), op(3)], None, None, None, T0, operate)
    assert result.state == [1, 2, 3]
    assert [a.outcome.result for a in result.applied if a.outcome] == [1, 2, 3]
    assert [s.input for a in result.applied if a.outcome for s in a.outcome.signals] == [1, 2, 3]


def test_a_failed_operation_changes_nothing_and_sends_nothing() -> None:
    result = run_batch([op(1), op(None, operation="fail", caller="o"), op(2)], None, None, None,
                       T0, operate)
    assert result.state == [1, 2]
    failed = result.applied[1].outcome
    assert failed is not None and failed.failure is not None and failed.signals == []
    assert failed.failure.error_type == "ValueError"


def test_delayed_signals_wait_for_their_time() -> None:
    later = op(2, signal_time=T0 + timedelta(seconds=5))
    result = run_batch([later, op(1)], None, None, None, T0, operate)
    assert result.state == [1] and result.waiting == 1
    result = run_batch([later], [1], None, None, T0 + timedelta(seconds=5), operate)
    assert result.state == [1, 2]


def test_a_lock_lets_only_its_holder_through_until_its_unlock() -> None:
    requests = [lock("o1"), op("other", caller="o2"), op("client"), lock("o3", 4),
                op("holder", caller="o1"), unlock("o1"), op("o3's", caller="o3")]
    result = run_batch(requests, None, None, None, T0, operate)
    # o1 locks; o2's call and the client's signal wait; o1's call runs; o1 unlocks; then the
    # waiting ones run in arrival order, o3 locks, and o3's call runs in its section
    assert applied_ops(result) == ["holder", "other", "client", "o3's"]
    assert result.lock == ("o3", "e", 4) and result.holder == "o3"
    assert [r.caller for r in result.granted] == ["o1", "o3"]


def test_an_unlock_that_overtakes_its_lock_request_waits_for_it() -> None:
    early = run_batch([unlock("o1"), op(1)], None, None, None, T0, operate)
    assert early.waiting == 1 and early.lock is None and applied_ops(early) == [1]
    later = run_batch([unlock("o1"), lock("o1")], [1], None, None, T0, operate)
    assert later.waiting == 0 and later.lock is None and len(later.granted) == 1


def test_a_locked_entity_keeps_other_requests_waiting_in_order() -> None:
    result = run_batch([op(1), op(2, caller="o2")], None, ("o1", "e", 9), "o1", T0, operate)
    assert result.applied == [] and result.waiting == 2


def test_the_batch_limit_leaves_the_rest_for_the_next_episode() -> None:
    result = run_batch([op(i) for i in range(5)], None, None, None, T0, operate, limit=3)
    assert result.state == [0, 1, 2] and result.waiting == 2


def test_started_orchestration_ids_are_the_same_when_an_operation_runs_again() -> None:
    def start(ctx: EntityContext, input: Any) -> str:
        return ctx.schedule_new_orchestration("child", input)

    once = run_operation(start, E, None, "go", 1, seed="key-1")
    again = run_operation(start, E, None, "go", 1, seed="key-1")
    assert once.result == again.result and once.starts == again.starts
