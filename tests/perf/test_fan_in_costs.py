"""Structural costs of a fan-in, counted (never timed): the results of a fan-out that the
orchestration's code does not wait for alone go to the inbox with a coalesced wake-up instead
of running an episode each (`EpisodeRunner.can_wait`).

Driven in this process (`perf_driver.InProcessWorker`) with the real runtime: each such result
costs ONE statement on PostgreSQL (inbox row and wake-up claim, in autocommit) and four on
SQLite (its BEGIN IMMEDIATE included); one wake-up message is sent for all of them, and the
episode it runs consumes them together. The orchestration's replay work stays O(N).
"""

from __future__ import annotations

from typing import Any

from perf_driver import InProcessWorker, is_activity

from celery_durable import Durable, OrchestrationStatus, activity, orchestrator, when_all
from celery_durable.runtime import messages

N = 300


@activity(name="perf.fan_in.noop")
def noop(ctx: Any, value: Any) -> Any:
    return value


@orchestrator(name="perf.fan_in")
def fan_out(ctx: Any, n: int) -> Any:
    results = yield when_all([ctx.call_activity(noop, input=i) for i in range(n)])
    return sum(results)


def test_fan_out_results_cost_one_write_each_and_share_one_episode(durable: Durable) -> None:
    with InProcessWorker(durable).running() as worker:
        iid = durable.client.schedule_new_orchestration(fan_out, input=N)
        worker.step()  # the start: schedules N activities (and caches the state here)
        assert len(worker.queue) == N and all(is_activity(m) for m in worker.queue)
        before = durable.runner.counters()
        statements = []
        for _ in range(N):
            with durable.store.statement_count() as counted:
                worker.step()
            statements.append(len(counted.statements))
        after = durable.runner.counters()
        wakeups = [m for m in worker.queue if m.task == messages.EPISODE_TASK]
        per_result = 1 if durable.store.dialect == "postgresql" else 4
        print(f"{durable.store.dialect}: statements per result {set(statements)}, "
              f"{len(wakeups)} wake-up(s), counters {after}")
        assert after["waited"] - before["waited"] == N  # the cached state knew each could wait
        assert after["episodes"] == before["episodes"]  # ... so none ran an episode
        assert max(statements) == per_result, statements
        assert len(wakeups) == 1 and len(worker.queue) == 1  # one wake-up for all of them
        assert durable.store.inbox_size(iid) == N
        worker.drain()
    state = durable.client.get_orchestration_state(iid)
    assert state is not None and state.runtime_status is OrchestrationStatus.COMPLETED
    assert state.output == sum(range(N))
    assert durable.store.inbox_size(iid) == 0
    assert durable.runner.counters()["events_processed"] <= 3 * N + 10


def test_the_last_result_runs_the_episode_when_the_state_is_current(durable: Durable) -> None:
    """With an up-to-date cached state the result that completes the when_all is not left
    waiting: it runs the episode inline (no wake-up hop at the end of a fan-in)."""
    with InProcessWorker(durable).running() as worker:
        iid = durable.client.schedule_new_orchestration(fan_out, input=3)
        worker.step()
        worker.step()  # the first result waits in the inbox, a wake-up is queued behind
        worker.step()
        wakeup = worker.queue.pop()  # run the wake-up before the last result
        assert wakeup.task == messages.EPISODE_TASK
        worker.run(wakeup)
        episodes = durable.runner.counters()["episodes"]
        assert worker.queue and is_activity(worker.queue[0])
        worker.step()  # the state is current: it knows this one completes the when_all
        assert durable.runner.counters()["episodes"] == episodes + 1
        assert not worker.queue
    state = durable.client.get_orchestration_state(iid)
    assert state is not None and state.runtime_status is OrchestrationStatus.COMPLETED
