"""`EpisodeRunner.observers`: the hook metrics (and tracing) use; called after each committed
episode with its outcome, and an observer's error changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from celery_durable import OrchestrationStatus, activity, orchestrator
from celery_durable.runtime.episode import EpisodeOutcome


@activity(name="observers.double")
def double(ctx: Any, value: int) -> int:
    return value * 2


@orchestrator(name="observers.twice")
def twice(ctx: Any, value: int) -> Any:
    value = yield ctx.call_activity(double, input=value)
    return (yield ctx.call_activity(double, input=value))


def test_observers_see_every_committed_episode(durable_env: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    seen: list[EpisodeOutcome] = []

    def broken(outcome: EpisodeOutcome) -> None:
        raise RuntimeError("an observer's bug")

    runner = durable_env.durable.runner
    runner.observers.extend([broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="celery_durable.runtime.episode"):
        iid = durable_env.schedule_new_orchestration(twice, input=3)
        state = durable_env.wait_for_orchestration_completion(iid, timeout=10)
    assert state.output == 12
    assert [o.status for o in seen] == [OrchestrationStatus.RUNNING] * 2 + [
        OrchestrationStatus.COMPLETED]
    assert {(o.instance_id, o.orchestrator) for o in seen} == {(iid, "observers.twice")}
    assert all(o.seconds >= 0 for o in seen)
    assert caplog.text.count("episode observer") == 3
