"""Structural cost in Python function calls, counted with cProfile (never timed): one remote
activity step (the activity task runs the function, records its completion and runs the next
episode inline, which commits and publishes the next activity) and one local activity step
(``ctx.call_local_activity``: run inside the episode; the cost of a batch divided by its
length), and a fan-out's first episode per activity it schedules and publishes, in this process
with the real runtime (`perf_driver.InProcessWorker`).

The budgets are the counts measured when they were set plus some headroom: a change that adds
work to every step (a statement built anew each time, a repeated lookup, another pass over the
history) fails here without a stopwatch. Measured figures are printed with ``-s``.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
from typing import Any

from perf_driver import InProcessWorker, is_activity, sequence
from test_fan_in_costs import fan_out
from test_local_step_costs import local_sequence

from celery_durable import Durable, OrchestrationStatus

#: function calls per step, at most: (remote activity step, local activity step), per store
BUDGET = {"postgresql": (2_100, 240), "sqlite": (2_200, 200)}
STEPS = 40


def _calls(fn: Any) -> int:
    profile = cProfile.Profile()
    profile.enable()
    try:
        fn()
    finally:
        profile.disable()
    return int(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]


def _backend(durable: Durable) -> str:
    return "postgresql" if durable.store.dialect == "postgresql" else "sqlite"


def test_function_calls_per_remote_and_local_step(durable: Durable) -> None:
    remote_budget, local_budget = BUDGET[_backend(durable)]
    with InProcessWorker(durable).running() as worker:
        iid = durable.client.schedule_new_orchestration(sequence, input=STEPS)
        worker.step()  # the wake-up
        counts = []
        while worker.queue:
            assert is_activity(worker.queue[0])
            counts.append(_calls(worker.step))
        remote = statistics.median(counts[5:])  # past the first steps' imports and caches
        record = durable.store.get_instance(iid)
        assert record is not None and record.status is OrchestrationStatus.COMPLETED

        batch = durable.settings.local_activity_batch
        durable.client.schedule_new_orchestration(local_sequence, input=1)
        worker.step()  # warm: the local path's first run
        durable.client.schedule_new_orchestration(local_sequence, input=1)
        one = _calls(worker.step)
        durable.client.schedule_new_orchestration(local_sequence, input=batch)
        full = _calls(worker.step)
        local = (full - one) / (batch - 1)  # what one more local activity adds to an episode
    print(f"function calls per step ({_backend(durable)}): remote activity {remote:.0f}, "
          f"local activity {local:.0f} (an episode of 1: {one}, of {batch}: {full})")
    assert remote <= remote_budget, remote
    assert local <= local_budget, local


#: function calls of a fan-out's first episode, per activity it schedules (and publishes), at most
FAN_OUT_BUDGET = {"postgresql": 475, "sqlite": 445}
FAN_OUT = 300


def test_function_calls_per_activity_of_a_fan_out_first_episode(durable: Durable) -> None:
    with InProcessWorker(durable).running() as worker:
        durable.client.schedule_new_orchestration(fan_out, input=2)
        worker.drain()  # warm: imports, caches, the queue's declaration
        durable.client.schedule_new_orchestration(fan_out, input=FAN_OUT)
        calls = _calls(worker.step)
        assert len(worker.queue) == FAN_OUT and all(is_activity(m) for m in worker.queue)
    per_activity = calls / FAN_OUT
    print(f"function calls of a fan-out's first episode ({_backend(durable)}): {calls}, "
          f"{per_activity:.0f} per activity")
    assert per_activity <= FAN_OUT_BUDGET[_backend(durable)], per_activity
