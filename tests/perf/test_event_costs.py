"""Structural costs of an external event and of a timer firing, counted, never timed.

An event takes two broker hops (client -> episode -> activity); what each side sends to the
store between them is counted through the store's cursor events (`perf_driver.InProcessWorker`
runs the published messages in this process, with a warm state cache):

- the client's ``raise_orchestration_event``: the status check and the delivery with its
  wake-up claim are ONE statement on PostgreSQL;
- the woken episode: it takes the instance's lock and releases the wake-up claim in one
  statement, reads the inbox, commits: 3 statements on PostgreSQL, no history read;
- a timer firing is recorded as an activity's completion is: the episode runs inline in the
  timer task, 2 statements on PostgreSQL (the lock, which tells that the inbox is empty, and
  the commit), as an activity step; also when it ends the orchestration (the commit deletes
  its timers), and the episode that creates a timer writes it with its commit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from perf_driver import InProcessWorker, echo, is_activity
from test_step_costs import kinds

from celery_durable import Durable, OrchestrationStatus, orchestrator
from celery_durable.runtime import messages


@orchestrator(name="perf.event_then_timer")
def event_then_timer(ctx: Any, rounds: int) -> Any:
    """``rounds`` times: wait for ``go``, run an activity, sleep, run an activity."""
    for _ in range(rounds):
        value = yield ctx.wait_for_external_event("go")
        yield ctx.call_activity(echo, input=value)
        yield ctx.create_timer(timedelta(seconds=1))
        yield ctx.call_activity(echo, input=value)
    return rounds


@orchestrator(name="perf.sleep")
def sleep(ctx: Any, _: Any = None) -> Any:
    yield ctx.create_timer(timedelta(seconds=1))
    return "slept"


def _costs(durable: Durable, worker: InProcessWorker, iid: str) -> dict[str, list[str]]:
    """One round: the statements of the client's event, its woken episode, and the timer."""
    store = durable.store
    with store.statement_count() as client:
        durable.client.raise_orchestration_event(iid, "go", data=1)
    assert [m.task for m in worker.queue] == [messages.EPISODE_TASK]
    with store.statement_count() as episode:
        worker.step()
    assert [is_activity(m) for m in worker.queue] == [True]
    worker.step()  # the activity; its episode schedules the timer
    assert [m.task for m in worker.queue] == [messages.TIMER_TASK]
    with store.statement_count() as timer:
        worker.step()
    assert [is_activity(m) for m in worker.queue] == [True]  # the timer's episode ran inline
    worker.step()  # the activity: the orchestration waits for the next event
    assert not worker.queue
    return {"client": client.statements, "episode": episode.statements,
            "timer": timer.statements}


def test_an_event_and_a_timer_cost_few_statements(durable: Durable) -> None:
    rounds = 4
    with InProcessWorker(durable).running() as worker:
        iid = durable.client.schedule_new_orchestration(event_then_timer, input=rounds)
        worker.step()  # the start: it waits for the first event
        costs = [_costs(durable, worker, iid) for _ in range(rounds)]
        record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    last = costs[-2]  # a warm round that does not end the orchestration
    print(f"{durable.store.dialect}: " + ", ".join(
        f"{side} {len(statements)} {kinds(statements)}" for side, statements in last.items()))
    for round_costs in costs[1:-1]:
        for statements in round_costs.values():
            assert "SELECT durable_history" not in kinds(statements), statements
    if durable.store.dialect == "postgresql":
        assert [len(last[side]) for side in ("client", "episode", "timer")] == [1, 3, 2], last
        assert kinds(last["client"]) == ["WITH durable_instances"], last["client"]
    else:  # SQLite: BEGIN IMMEDIATE, and a statement per table (no data-modifying CTEs)
        assert len(last["client"]) <= 4, last["client"]
        assert len(last["episode"]) <= 8, last["episode"]
        assert len(last["timer"]) <= 8, last["timer"]


def test_a_sleep_costs_a_woken_start_and_a_timer_of_two_statements(durable: Durable) -> None:
    with InProcessWorker(durable).running() as worker:
        durable.client.schedule_new_orchestration(sleep)  # warms the process (schema, caches)
        worker.drain()
        iid = durable.client.schedule_new_orchestration(sleep)
        with durable.store.statement_count() as start:
            worker.step()  # the start's episode: it creates the timer
        assert [m.task for m in worker.queue] == [messages.TIMER_TASK]
        with durable.store.statement_count() as timer:
            worker.step()
        assert not worker.queue
    record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    print(f"{durable.store.dialect}: start {len(start.statements)} {kinds(start.statements)}, "
          f"timer {len(timer.statements)} {kinds(timer.statements)}")
    if durable.store.dialect == "postgresql":
        assert len(start.statements) == 3, start.statements  # lock and release, inbox, commit
        assert len(timer.statements) == 2, timer.statements  # lock, commit
    with durable.store.engine.connect() as conn:  # the timers went with the commit
        assert conn.exec_driver_sql("SELECT count(*) FROM durable_timers").scalar_one() == 0
