"""Structural cost of local activities (``ctx.call_local_activity``), counted, never timed: a
local activity runs inside the episode and its outcome joins that episode's commit, so a batch
of them costs the SQL statements of ONE episode, whatever its length (up to the batch bound,
``durable_local_activity_batch``), in the thread that runs it; each further batch is one more
step of a remote activity's cost."""

from __future__ import annotations

from typing import Any

from perf_driver import InProcessWorker, echo

from celery_durable import Durable, OrchestrationStatus, orchestrator

#: a remote activity step's bound (tests/perf/test_step_costs.py)
MAX_STATEMENTS = 8


@orchestrator(name="perf.local_sequence")
def local_sequence(ctx: Any, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.call_local_activity(echo, input=i)
    return total


def _episode_statements(durable: Durable, worker: InProcessWorker, n: int) -> list[str]:
    iid = durable.client.schedule_new_orchestration(local_sequence, input=n)
    with durable.store.statement_count() as counted:
        worker.step()  # the wake-up: one episode runs every local activity and the end
    record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    assert record.output == sum(range(n))
    assert not worker.queue  # nothing was published for the activities
    return list(counted.statements)


def test_a_batch_of_local_activities_costs_one_episode(durable: Durable) -> None:
    with InProcessWorker(durable).running() as worker:
        _episode_statements(durable, worker, 1)  # warms the process (schema, caches)
        none = _episode_statements(durable, worker, 0)
        one = _episode_statements(durable, worker, 1)
        many = _episode_statements(durable, worker, 15)
    # a local activity adds no statement: its events go with the episode's own insert
    assert len(one) == len(none), (none, one)
    assert len(many) == len(one), (one, many)
    assert len(one) <= MAX_STATEMENTS, one
    print(f"statements of an episode with 0, 1, 15 local activities: {len(none)}, {len(one)}, "
          f"{len(many)}")


def test_past_the_batch_bound_each_batch_is_one_step(durable: Durable) -> None:
    batch = durable.settings.local_activity_batch
    n = 3 * batch
    with InProcessWorker(durable).running() as worker:
        iid = durable.client.schedule_new_orchestration(local_sequence, input=n)
        with durable.store.statement_count() as counted:
            steps = worker.drain()
        record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.COMPLETED
    assert steps == 3  # the wake-up, then one message per leftover batch
    assert len(counted.statements) <= 3 * MAX_STATEMENTS + 2
