"""Entities in the in-process test environment (`durable_env`): the same entity episodes as on
workers, on the test clock; exactly-once under a duplicated wake-up and a re-delivered request;
delayed signals fire when the clock reaches them; clean_entity_storage."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "entities"))

import entity_workflows as wf  # noqa: E402

from celery_durable import EntityInstanceId, OrchestrationStatus  # noqa: E402
from celery_durable.engine.entity_messages import SIGNAL, EntityRequest  # noqa: E402
from celery_durable.store import InboxItem  # noqa: E402
from celery_durable.testing import DurableTestEnv  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def env(request: pytest.FixtureRequest) -> Iterator[DurableTestEnv]:
    """The environment on each store dialect (the entity store's SQL runs on all three)."""
    if request.param == "sqlite":
        with DurableTestEnv() as env:
            yield env
        return
    from services import database

    with database(request.param, "durable_ent_env") as url, DurableTestEnv(url) as env:
        yield env


def counter(key: str) -> EntityInstanceId:
    return EntityInstanceId("counter", key)


def test_counter_from_the_client_and_from_orchestrations(env: DurableTestEnv) -> None:
    for _ in range(3):
        env.signal_entity(counter("c"), "add", input=2)
    ids = [env.schedule_new_orchestration(wf.add_many, input={"key": "c", "times": 3})
           for _ in range(4)]
    for iid in ids:
        assert env.wait_for_orchestration_completion(iid).runtime_status is \
            OrchestrationStatus.COMPLETED
    state = env.get_entity(counter("c"))
    assert state is not None and state.get_state(int) == 6 + 4 * 4
    assert state.locked_by is None and state.backlog_queue_size == 0


def test_a_failing_operation_fails_the_call_and_keeps_the_state(env: DurableTestEnv) -> None:
    iid = env.schedule_new_orchestration(wf.call_failing, input="f")
    state = env.wait_for_orchestration_completion(iid)
    assert state.output == {"error": "ValueError", "value": 5}


def test_transfers_in_critical_sections_conserve_the_total(env: DurableTestEnv) -> None:
    for key in "abc":
        env.signal_entity(wf.account(key), "deposit", input=100)
    ids = [env.schedule_new_orchestration(wf.transfer, input={
        "source": "abc"[i % 3], "target": "abc"[(i + 1) % 3], "amount": 30 + i})
        for i in range(9)]
    for iid in ids:
        env.wait_for_orchestration_completion(iid)
    balances = [env.get_entity(wf.account(k)).get_state() for k in "abc"]  # type: ignore[union-attr]
    assert sum(balances) == 300 and min(balances) >= 0


def test_locks_are_released_on_failure_and_on_termination(env: DurableTestEnv) -> None:
    failing = env.schedule_new_orchestration(wf.fail_inside_lock, input="x")
    assert env.wait_for_orchestration_completion(failing).runtime_status is \
        OrchestrationStatus.FAILED
    waiting = env.schedule_new_orchestration(wf.wait_inside_lock, input="x")
    env.run_until_idle()
    held = env.get_entity(wf.account("x"))
    assert held is not None and held.locked_by == waiting
    env.signal_entity(wf.account("x"), "deposit", input=10)  # waits for the lock
    assert env.get_entity(wf.account("x")).backlog_queue_size == 1  # type: ignore[union-attr]
    env.terminate_orchestration(waiting)
    after = env.get_entity(wf.account("x"))
    assert after is not None and after.locked_by is None and after.get_state() == 12


def test_a_redelivered_request_and_a_duplicated_wake_up_apply_once(env: DurableTestEnv) -> None:
    eid = "@counter@dup"
    item = InboxItem("c:same", EntityRequest(SIGNAL, "add", 1).to_event(env.now))
    env.store.entities.deliver(eid, [item])
    env.store.entities.deliver(eid, [item])  # the same request again, still waiting: one row
    env.durable.entities.run(eid)
    env.durable.entities.run(eid)  # a duplicated wake-up finds nothing left to apply
    assert env.get_entity(eid).get_state() == 1  # type: ignore[union-attr]


def test_delayed_signals_run_when_the_clock_reaches_them(env: DurableTestEnv) -> None:
    env.signal_entity(counter("later"), "add", input=1,
                      signal_time=env.now + timedelta(minutes=5))
    env.signal_entity(counter("later"), "add", input=1, signal_time=env.now + timedelta(days=30))
    assert env.get_entity(counter("later")) is None
    env.advance(timedelta(minutes=5))
    assert env.get_entity(counter("later")).get_state() == 1  # type: ignore[union-attr]
    env.advance(timedelta(days=30))
    assert env.get_entity(counter("later")).get_state() == 2  # type: ignore[union-attr]


def test_clean_entity_storage(env: DurableTestEnv) -> None:
    env.signal_entity(counter("gone"), "add", input=1)
    env.signal_entity(counter("gone"), "delete")
    assert env.get_entity(counter("gone")) is None
    # a lock whose holder no longer exists (say, its rows were deleted by hand)
    from sqlalchemy import update

    from celery_durable.store.schema import entities
    env.signal_entity(counter("held"), "add", input=1)
    with env.store.engine.begin() as conn:
        conn.execute(update(entities).where(entities.c.instance_id == "@counter@held")
                     .values(locked_by="no-such-instance", lock_execution="e", lock_task_id=0))
    env.signal_entity(counter("held"), "add", input=1)  # waits for the orphaned lock
    result = env.clean_entity_storage()
    assert (result.empty_entities_removed, result.orphaned_locks_released) == (1, 1)
    env.run_until_idle()
    assert env.get_entity(counter("held")).get_state() == 2  # type: ignore[union-attr]
    page = env.get_all_entities(name="counter", limit=1)
    assert [m.id for m in page.items] == [counter("held")] and page.continuation_token is None


def test_an_entity_no_worker_imports_fails_its_calls(env: DurableTestEnv) -> None:
    iid = env.schedule_new_orchestration(wf.call_unknown)
    assert env.wait_for_orchestration_completion(iid).output == "UnknownNameError"
