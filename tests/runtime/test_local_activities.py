"""Local activities (``ctx.call_local_activity``): run by the episode before its commit, their
outcome recorded in the same commit as ordinary completion events; bounded batches; retries
waited in-process when short, durable timers when long; failures raise TaskFailedError; the
test harness, its mocks and the replay check treat them like other activities."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery

from celery_durable import Durable, OrchestrationStatus, RetryPolicy, TaskFailedError
from celery_durable.engine import history as h
from celery_durable.testing import DurableTestEnv
from celery_durable.testing.replay_check import check, export_history

Status = OrchestrationStatus

app = Celery("local_activities", broker="memory://", set_as_current=False)
app.conf.durable_local_activity_batch = 5
durable = Durable(app, store_url="sqlite://")
RUNS: list[str] = []
FAILURES: dict[str, int] = {}


@durable.activity(name="local.add")
def add(ctx: Any, pair: list[int]) -> int:
    RUNS.append(f"add {pair}")
    return pair[0] + pair[1]


@durable.activity(name="local.flaky")
def flaky(ctx: Any, key: str) -> str:
    RUNS.append(f"flaky {key} attempt {ctx.attempt}")
    if FAILURES.get(key, 0) > 0:
        FAILURES[key] -= 1
        raise ConnectionError(f"{key} busy")
    return f"{key} ok at attempt {ctx.attempt}"


@durable.orchestrator(name="local.count")
def count(ctx: Any, steps: int) -> Any:
    total = 0
    for i in range(steps):
        total = yield ctx.call_local_activity(add, input=[total, i])
    return total


@durable.orchestrator(name="local.retry")
def retry(ctx: Any, plan: dict[str, Any]) -> Any:
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=plan["wait"]),
                         max_number_of_attempts=plan["attempts"])
    try:
        return (yield ctx.call_local_activity("local.flaky", input=plan["key"],
                                              retry_policy=policy))
    except TaskFailedError as exc:
        return ["failed", exc.details.error_type, exc.details.message]


@durable.orchestrator(name="local.mixed")
def mixed(ctx: Any) -> Any:
    a = yield ctx.call_activity(add, input=[1, 2])
    b = yield ctx.call_local_activity(add, input=[a, 10])
    return b


@pytest.fixture
def env() -> Iterator[DurableTestEnv]:
    RUNS.clear()
    FAILURES.clear()
    with DurableTestEnv(app=durable) as test_env:
        yield test_env


def _history(env: DurableTestEnv, iid: str) -> list[h.HistoryEvent]:
    return list(env.get_orchestration_history(iid))


def test_a_batch_of_local_activities_is_one_commit(env: DurableTestEnv) -> None:
    iid = env.schedule_new_orchestration(count, input=4)
    state = env.wait_for_orchestration_completion(iid)
    assert state.runtime_status is Status.COMPLETED, state.failure_details
    assert state.output == 0 + 1 + 2 + 3
    assert RUNS == ["add [0, 0]", "add [0, 1]", "add [1, 2]", "add [3, 3]"]
    history = _history(env, iid)
    scheduled = [e for e in history if e.kind == h.TASK_SCHEDULED]
    assert [e.data["local"] for e in scheduled] == [True] * 4
    # each TaskScheduled is followed by its completion: the order replay checks
    kinds = [e.kind for e in history]
    assert kinds == [h.EXECUTION_STARTED] + [h.TASK_SCHEDULED, h.TASK_COMPLETED] * 4 + \
        [h.EXECUTION_COMPLETED]
    assert env.durable.runner.episodes == 1  # start, 4 local activities and the end: one commit


def test_the_batch_bound_commits_and_continues_elsewhere(env: DurableTestEnv) -> None:
    """durable_local_activity_batch = 5: 12 steps take three batches (5, 5, 2); a batch's
    leftover is sent as a message, whose run records it and goes on with the next batch."""
    iid = env.schedule_new_orchestration(count, input=12)
    state = env.wait_for_orchestration_completion(iid)
    assert state.runtime_status is Status.COMPLETED, state.failure_details
    assert state.output == sum(range(12))
    assert len(RUNS) == 12  # each once
    assert env.durable.runner.episodes == 3


def test_a_failure_raises_task_failed_error(env: DurableTestEnv) -> None:
    FAILURES["x"] = 1
    iid = env.schedule_new_orchestration(retry, input={"key": "x", "wait": 0.01, "attempts": 1})
    state = env.wait_for_orchestration_completion(iid)
    assert state.output == ["failed", "ConnectionError", "x busy"]


def test_a_short_retry_is_waited_in_process(env: DurableTestEnv) -> None:
    FAILURES["y"] = 2
    iid = env.schedule_new_orchestration(retry, input={"key": "y", "wait": 0.05, "attempts": 3})
    state = env.wait_for_orchestration_completion(iid)
    assert state.output == "y ok at attempt 3"
    kinds = [e.kind for e in _history(env, iid)]
    assert kinds.count(h.TIMER_CREATED) == 2 and kinds.count(h.TIMER_FIRED) == 2
    assert env.durable.runner.episodes == 1


def test_a_long_retry_becomes_a_durable_timer(env: DurableTestEnv) -> None:
    FAILURES["z"] = 1
    iid = env.schedule_new_orchestration(retry, input={"key": "z", "wait": 600, "attempts": 2})
    state = env.wait_for_orchestration_completion(iid)  # the test clock jumps to the timer
    assert state.output == "z ok at attempt 2"
    history = _history(env, iid)
    created = next(e for e in history if e.kind == h.TIMER_CREATED)
    fired = next(e for e in history if e.kind == h.TIMER_FIRED)
    # not waited in-process: the test clock moved to the durable timer, whose episode ran
    # the second attempt
    assert fired.timestamp - created.timestamp >= timedelta(seconds=599)
    assert [e.kind for e in history].index(h.TIMER_FIRED) + 1 == \
        [e.kind for e in history].index(h.TASK_SCHEDULED, 2)


def test_mocks_replace_local_activities(env: DurableTestEnv) -> None:
    mock = env.mock_activity(add, returns=7)
    iid = env.schedule_new_orchestration(count, input=2)
    assert env.wait_for_orchestration_completion(iid).output == 7
    assert RUNS == [] and len(mock.calls) == 2


def test_local_and_remote_activities_mix_and_replay(env: DurableTestEnv) -> None:
    iid = env.schedule_new_orchestration(mixed)
    assert env.wait_for_orchestration_completion(iid).output == 13
    scheduled = [e.data for e in _history(env, iid) if e.kind == h.TASK_SCHEDULED]
    assert ["local" in data for data in scheduled] == [False, True]
    result = check(export_history(env.durable.store, iid), mixed)
    assert result.ok, result


def test_bounds_settings_are_checked() -> None:
    bad = Celery("local_bad", broker="memory://", set_as_current=False)
    bad.conf.durable_local_activity_batch = 0
    with pytest.raises(ValueError, match="durable_local_activity_batch must be a positive int"):
        Durable(bad, store_url="sqlite://").settings  # noqa: B018


def test_timeline_dashboard_and_cli_mark_them_local(env: DurableTestEnv) -> None:
    from celery.bin.base import CLIContext
    from click.testing import CliRunner

    from celery_durable.cli import durable as durable_group
    from celery_durable.ui.dashboard import event_json
    from celery_durable.ui.timeline import build_timeline

    iid = env.schedule_new_orchestration(mixed)
    env.wait_for_orchestration_completion(iid)
    record = env.durable.store.get_instance(iid)
    assert record is not None
    history = _history(env, iid)
    bars = build_timeline(iid, record.execution_id, history, env.now).bars
    activities = [(bar.label, bar.celery_task_id is None) for bar in bars
                  if bar.kind == "activity"]
    assert activities == [("local.add", False), ("local.add (local)", True)]
    links = [event_json(iid, record.execution_id, e)["celery_task_id"] for e in history
             if e.kind == h.TASK_SCHEDULED]
    assert links[0] is not None and links[1] is None  # no Celery task ran the local one
    result = CliRunner().invoke(durable_group, ["history", iid],
                                obj=CLIContext(app=env.app, no_color=True, workdir=None))
    assert result.exit_code == 0, result.output
    names = [line.split()[3] + (" (local)" if "(local)" in line else "")
             for line in result.stdout.splitlines() if "TaskScheduled" in line]
    assert names == ["local.add", "local.add (local)"]


def test_a_leftover_local_activity_is_redispatched_as_its_episode_sent_it() -> None:
    """A batch's leftover local activity, once overdue, is sent again on its episode queue
    (as the episode sent it), a remote activity on its activity's queue."""
    from celery_durable.runtime.redispatch import redispatch_message
    from celery_durable.store.overdue import OverdueTask

    def overdue(data: dict[str, Any]) -> OverdueTask:
        return OverdueTask("i", "e", 3, h.TASK_SCHEDULED, "local.add", data, "local.count",
                           None, 0)

    local = redispatch_message(durable, overdue({"input": [1, 2], "attempt": 1, "local": True}))
    remote = redispatch_message(durable, overdue({"input": [1, 2], "attempt": 1}))
    assert local["options"]["queue"] == durable.episode_queue("local.count")
    assert remote["options"].get("queue") is None  # the activity's (here: the default) queue
    assert local["args"] == remote["args"] == [[1, 2]]
