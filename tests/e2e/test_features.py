"""Every seed feature, end to end on a real worker, broker and database (the backend matrix)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import workflows as wf
from conftest import Harness

from celery_durable import OrchestrationStatus

COMPLETED = OrchestrationStatus.COMPLETED


def completions(history):
    """task id -> number of completion events for it."""
    kinds = {"TaskCompleted", "TaskFailed", "TimerFired", "SubOrchestrationCompleted",
             "SubOrchestrationFailed"}
    return Counter(e.task_id for e in history if e.kind in kinds)


def assert_no_duplicates(h: Harness, instance_id: str) -> None:
    counts = completions(h.client.get_orchestration_history(instance_id))
    assert all(n == 1 for n in counts.values()), counts


def test_activity_sequence(harness: Harness) -> None:
    state = harness.run(wf.sequence, 10)
    assert state.runtime_status is COMPLETED
    assert state.output == sum(range(10))
    history = harness.client.get_orchestration_history(state.instance_id)
    assert [e.kind for e in history].count("TaskCompleted") == 10
    assert history[0].kind == "ExecutionStarted" and history[-1].kind == "ExecutionCompleted"
    assert [e.seq for e in history] == list(range(len(history)))


def test_fan_out_fan_in_of_200(harness: Harness) -> None:
    state = harness.run(wf.fan_out, 200, timeout=120)
    assert state.runtime_status is COMPLETED
    assert state.output == sum(range(200))
    assert_no_duplicates(harness, state.instance_id)
    history = harness.client.get_orchestration_history(state.instance_id)
    assert sum(e.kind == "TaskScheduled" for e in history) == 200


def test_activity_failure_caught(harness: Harness) -> None:
    state = harness.run(wf.catch_failure)
    assert state.runtime_status is COMPLETED
    assert state.output == {"caught": "ValueError", "message": "boom"}


def test_activity_failure_uncaught_fails_the_instance(harness: Harness) -> None:
    state = harness.run(wf.uncaught_failure)
    assert state.runtime_status is OrchestrationStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "TaskFailedError"
    assert "kaput" in state.failure_details.message
    assert "ValueError" in state.failure_details.message
    with pytest.raises(Exception, match="kaput"):
        state.raise_if_failed()


def test_retry_policy_with_backoff(harness: Harness) -> None:
    state = harness.run(wf.retry, 3)
    assert state.runtime_status is COMPLETED
    assert state.output == 3
    history = harness.client.get_orchestration_history(state.instance_id)
    retries = [e for e in history if e.kind == "TimerCreated" and e.name == "retry"]
    assert len(retries) == 2
    scheduled = [e for e in history if e.kind == "TaskScheduled"]
    assert [e.data["attempt"] for e in scheduled] == [1, 2, 3]
    # backoff 2.0: the second wait is twice the first (100 ms, then 200 ms)
    fails = [e for e in history if e.kind == "TaskFailed"]
    waits = [_fire_at(t) - f.timestamp for t, f in zip(retries, fails, strict=True)]
    assert waits == [timedelta(milliseconds=100), timedelta(milliseconds=200)]


def test_retry_policy_gives_up(harness: Harness) -> None:
    state = harness.run(wf.retry, 10)
    assert state.runtime_status is OrchestrationStatus.FAILED
    assert "attempt 4 failed" in state.failure_details.message


def _fire_at(event):
    from datetime import datetime

    return datetime.fromisoformat(event.data["fire_at"])


def test_sub_orchestration_fan_out(harness: Harness) -> None:
    state = harness.run(wf.parent, 5)
    assert state.runtime_status is COMPLETED
    assert state.output == [0, 2, 4, 6, 8]
    child = harness.client.get_orchestration_state(f"{state.instance_id}:0")
    assert child is not None and child.parent_instance_id == state.instance_id
    assert child.runtime_status is COMPLETED


def test_external_events_before_and_after_the_wait(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.wait_event, input=["first", "second"])
    client.raise_orchestration_event(iid, "SECOND", data=2)  # before its wait; case-insensitive
    client.wait_for_orchestration_start(iid)
    client.raise_orchestration_event(iid, "first", data=1)
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == [1, 2]


def test_when_any_event_beats_timer(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.event_or_timeout, input=30)
    client.raise_orchestration_event(iid, "go")
    assert client.wait_for_orchestration_completion(iid, timeout=30).output == "event"


def test_when_any_timer_beats_event(harness: Harness) -> None:
    state = harness.run(wf.event_or_timeout, 0.3)
    assert state.output == "timeout"


def test_suspend_resume_buffers_events(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.wait_event, input=["a", "b", "c"])
    client.wait_for_orchestration_start(iid)
    client.suspend_orchestration(iid, reason="maintenance")
    _wait_status(harness, iid, OrchestrationStatus.SUSPENDED)
    for name, value in [("a", 1), ("b", 2), ("c", 3)]:
        client.raise_orchestration_event(iid, name, data=value)
    _wait_drained(harness, iid)
    assert client.get_orchestration_state(iid).runtime_status is OrchestrationStatus.SUSPENDED
    client.resume_orchestration(iid)
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == [1, 2, 3]


def test_terminate_recursive(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.parent_of_waiters, input=3)
    children = [f"{iid}:{i}" for i in range(3)]
    for child in children:
        _wait_status(harness, child, OrchestrationStatus.RUNNING)
    client.terminate_orchestration(iid, output="stopped", recursive=True)
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status is OrchestrationStatus.TERMINATED
    assert state.output == "stopped"
    for child in children:
        child_state = client.wait_for_orchestration_completion(child, timeout=30)
        assert child_state.runtime_status is OrchestrationStatus.TERMINATED


def test_continue_as_new_with_saved_events(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.counter, input={"count": 0, "until": 10})
    for amount in (1, 2, 3, 4):  # sent at once: later ones are carried across executions
        client.raise_orchestration_event(iid, "inc", data=amount)
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status is COMPLETED
    assert state.output == 10
    history = client.get_orchestration_history(iid)
    assert history[0].kind == "ExecutionStarted"
    assert history[0].data["input"]["count"] > 0  # the last execution started from a carry


def test_custom_status(harness: Harness) -> None:
    client = harness.client
    iid = client.schedule_new_orchestration(wf.custom_status)
    _wait_until(lambda: (client.get_orchestration_state(iid).custom_status or {}).get("step") == 1)
    client.raise_orchestration_event(iid, "next")
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.custom_status == {"step": 2}


def test_purge(harness: Harness) -> None:
    state = harness.run(wf.parent, 2)
    client = harness.client
    assert client.purge_orchestration(state.instance_id, recursive=True) == 3
    assert client.get_orchestration_state(state.instance_id) is None
    assert client.get_orchestration_state(f"{state.instance_id}:0") is None


def test_concurrent_wake_ups_write_no_duplicate_history(harness: Harness) -> None:
    client = harness.client
    names = [f"e{i}" for i in range(20)]
    iid = client.schedule_new_orchestration(wf.wait_event, input=names)
    client.wait_for_orchestration_start(iid)
    threads = [threading.Thread(target=client.raise_orchestration_event, args=(iid, n),
                                kwargs={"data": n}) for n in names]
    threads += [threading.Thread(target=harness.durable.wake, args=(iid,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = client.wait_for_orchestration_completion(iid, timeout=60)
    assert state.output == names
    history = client.get_orchestration_history(iid)
    raised = [e.name for e in history if e.kind == "EventRaised"]
    assert sorted(raised) == sorted(names)
    assert [e.seq for e in history] == list(range(len(history)))


def test_far_timer_fires_once_through_the_sweeper(harness: Harness) -> None:
    # the harness' horizon is 2 s: a 3 s timer waits in the table until the sweeper sends it
    state = harness.run(wf.timer, 3.0, timeout=30)
    assert state.runtime_status is COMPLETED
    history = harness.client.get_orchestration_history(state.instance_id)
    assert [e.kind for e in history].count("TimerFired") == 1
    created = next(e for e in history if e.kind == "TimerCreated")
    fired = next(e for e in history if e.kind == "TimerFired")
    assert fired.timestamp >= _fire_at(created)


def test_activity_is_still_a_plain_celery_task(harness: Harness, tmp_path) -> None:
    task = harness.app.tasks["e2e.add"]
    assert task.acks_late and task.reject_on_worker_lost
    assert task.apply(args=[[2, 3]]).get() == 5
    marker = tmp_path / "ran"
    harness.app.tasks["e2e.touch"].delay(str(marker))
    # the file exists before its text is written: wait for the text
    _wait_until(lambda: marker.exists() and marker.read_text() == "plain")


def test_unknown_names_and_bad_input_are_refused(harness: Harness) -> None:
    from celery_durable import (
        InvalidInstanceIdError,
        OrchestrationNotFoundError,
        PayloadError,
        UnknownNameError,
    )

    client = harness.client
    # a name is scheduled as given (clients need no code); the worker that does not know it
    # fails the instance, naming the orchestrators it knows
    state = client.wait_for_orchestration_completion(
        client.schedule_new_orchestration("nope"), timeout=30)
    assert state.runtime_status is OrchestrationStatus.FAILED
    assert state.failure_details.error_type == UnknownNameError.__name__
    assert "no orchestrator is registered as 'nope'" in state.failure_details.message
    assert "e2e.sequence" in state.failure_details.message
    with pytest.raises(PayloadError, match="is a set"):
        client.schedule_new_orchestration(wf.sequence, input={1, 2})
    with pytest.raises(OrchestrationNotFoundError, match="no-such-instance"):
        client.raise_orchestration_event("no-such-instance", "x")
    with pytest.raises(InvalidInstanceIdError):
        client.schedule_new_orchestration(wf.sequence, input=1, instance_id="has space")


def _wait_until(condition, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _wait_status(h: Harness, iid: str, status: OrchestrationStatus) -> None:
    _wait_until(lambda: (s := h.client.get_orchestration_state(iid)) is not None
                and s.runtime_status is status)


def _wait_drained(h: Harness, iid: str) -> None:
    """Until the instance's inbox is empty (every event sent so far has been recorded)."""
    _wait_until(lambda: not h.durable.store.inbox_size(iid))


def test_activity_options_and_queue_routing(harness: Harness) -> None:
    task = harness.app.tasks["e2e.pay"]
    assert (task.durable_queue, task.rate_limit, task.time_limit) == \
        (wf.PAYMENTS_QUEUE, "100/s", 30)
    state = harness.run(wf.checkout, 7)
    assert state.output == {"paid": 7, "attempt": 1, "instance": state.instance_id}


def test_scheduled_start(harness: Harness) -> None:
    from datetime import datetime, timezone

    client = harness.client
    start_at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    iid = client.schedule_new_orchestration(wf.sequence, input=2, start_at=start_at)
    assert client.get_orchestration_state(iid).runtime_status is OrchestrationStatus.PENDING
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == 1
    started = client.get_orchestration_history(iid)[0]
    assert started.kind == "ExecutionStarted" and started.timestamp >= start_at


def test_settings_come_from_app_conf(harness: Harness) -> None:
    settings = harness.durable.settings
    assert settings.timer_horizon == timedelta(seconds=2)
    assert settings.sweep_interval == 0.5


def test_sweep_runs_as_a_task(harness: Harness) -> None:
    from celery_durable.runtime.messages import SWEEP_TASK

    harness.app.tasks[SWEEP_TASK].apply().get()


def test_far_delayed_start_waits_for_its_timer_not_the_sweeper(harness: Harness) -> None:
    from datetime import datetime, timezone

    from celery_durable.runtime.sweeper import sweep

    client = harness.client
    now = datetime.now(timezone.utc)
    start_at = now + timedelta(seconds=3)  # beyond the harness' 2 s horizon
    iid = client.schedule_new_orchestration(wf.sequence, input=2, start_at=start_at)
    # once its start event is older than the recovery grace, it is still not "stranded"
    report = sweep(harness.durable, now=now + timedelta(seconds=2.5))
    assert report.woken == 0
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == 1
    assert client.get_orchestration_history(iid)[0].timestamp >= start_at


def test_near_timer_is_sent_once_not_again_by_the_sweeper(harness: Harness) -> None:
    from celery_durable.runtime.sweeper import sweep

    client = harness.client
    iid = client.schedule_new_orchestration(wf.timer, input=1.5)
    _wait_until(lambda: any(e.kind == "TimerCreated"
                            for e in client.get_orchestration_history(iid)))
    assert sweep(harness.durable).timers == 0
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert [e.kind for e in client.get_orchestration_history(iid)].count("TimerFired") == 1
    assert state.runtime_status is COMPLETED


def test_duplicate_completion_delivery_never_duplicates_history(harness: Harness) -> None:
    from datetime import datetime, timezone

    from celery_durable.engine import history as h
    from celery_durable.runtime.episode import completion_item

    client = harness.client
    iid = client.schedule_new_orchestration(wf.step_then_wait, input="first")
    _wait_until(lambda: any(e.kind == "TaskCompleted"
                            for e in client.get_orchestration_history(iid)))
    record = harness.durable.store.get_instance(iid)
    duplicate = h.task_completed(0, "second", datetime.now(timezone.utc))
    for _ in range(3):  # as a redelivered activity message would
        harness.durable.record(iid, completion_item(record.execution_id, duplicate))
    client.raise_orchestration_event(iid, "finish")
    state = client.wait_for_orchestration_completion(iid, timeout=30)
    assert state.output == "first"
    assert_no_duplicates(harness, iid)
