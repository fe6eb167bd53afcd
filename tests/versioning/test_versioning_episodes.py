"""Versions checked at every episode, run episode by episode on one store and broker folder.

Each test plays the workers of a rolling upgrade as Durables with their own VersioningOptions on
one SQLite store; what they publish is read back from the filesystem broker's folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from versioning_cluster import QUEUE, Cluster

from celery_durable import Durable, OrchestrationStatus, VersioningOptions
from celery_durable import VersionFailureStrategy as Failure
from celery_durable import VersionMatchStrategy as Match
from celery_durable.runtime.durable import REJECT_RESENDS, VersionQueuesStep
from celery_durable.runtime.messages import EPISODE_TASK
from celery_durable.runtime.sweeper import sweep

Status = OrchestrationStatus


def approve(ctx: Any, n: int) -> Any:
    """Waits for 'go', then calls an activity; says which version ran it and how."""
    yield ctx.wait_for_external_event("go")
    value = yield ctx.call_activity("v.double", input=n)
    return {"version": ctx.version, "at_least_1_10": ctx.version_at_least("1.10"),
            "gt_1_9": ctx.version is not None and ctx.version > "1.9", "value": value}


def eternal(ctx: Any, rounds: int) -> Any:
    """Continues as new at version 2 once; returns the version of the execution that ended."""
    if rounds:
        ctx.continue_as_new(rounds - 1, new_version="2")
        return None
    yield ctx.create_timer(ctx.current_utc_datetime)
    return ctx.version


def child(ctx: Any, _: Any) -> Any:
    return ctx.version


def parent(ctx: Any, _: Any) -> Any:
    implicit = yield ctx.call_sub_orchestrator("v.child")
    explicit = yield ctx.call_sub_orchestrator("v.child", version="7")
    pinned = yield ctx.call_sub_orchestrator("v.pinned")
    return [implicit, explicit, pinned]


def double(ctx: Any, n: int) -> int:
    return 2 * n


def declare(durable: Durable) -> None:
    durable.orchestrator(approve, name="v.approve")
    durable.orchestrator(eternal, name="v.eternal")
    durable.orchestrator(child, name="v.child")
    durable.orchestrator(parent, name="v.parent")
    durable.activity(double, name="v.double")


def worker(cluster: Cluster, version: str | None, match: Match = Match.STRICT,
           failure: Failure = Failure.REJECT) -> Durable:
    options = None if version is None else VersioningOptions(
        version=version, default_version=version, match_strategy=match, failure_strategy=failure)
    return cluster.durable(options, declare)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(tmp_path, stack)


def drive(cluster: Cluster, durable: Durable, instance_id: str, limit: int = 20) -> Any:
    """Play ``durable``'s worker for the instance: run what the broker holds until it ends."""
    for _ in range(limit):
        state = durable.client.get_orchestration_state(instance_id)
        assert state is not None
        if state.runtime_status.is_terminal:
            return state
        sent = cluster.take_sent()
        assert sent, f"nothing to run, instance is {state.runtime_status.value}"
        for message in sent:  # run each as the worker would (an activity with its header)
            durable.app.tasks[message.task].apply(args=message.args, kwargs=message.kwargs,
                                                  headers={"durable": message.durable})
    raise AssertionError("the instance did not end")


def start_waiting(cluster: Cluster, durable: Durable) -> str:
    """An instance scheduled by ``durable``'s client, started there and waiting for 'go'."""
    instance_id = durable.client.schedule_new_orchestration("v.approve", input=3)
    (wake,) = cluster.take_sent()
    assert durable.runner.run(wake.args[0])
    assert durable.client.get_orchestration_state(instance_id).runtime_status is Status.RUNNING
    return instance_id


def raise_go(cluster: Cluster, durable: Durable, instance_id: str) -> None:
    durable.client.raise_orchestration_event(instance_id, "go")
    (wake,) = cluster.take_sent()
    assert wake.queue == QUEUE and wake.task == EPISODE_TASK


def test_strict_fail_fails_other_versions_with_a_clear_error(cluster: Cluster) -> None:
    v1 = worker(cluster, "1")
    instance_id = start_waiting(cluster, v1)
    v2 = worker(cluster, "2", failure=Failure.FAIL)
    raise_go(cluster, v1, instance_id)
    assert v2.runner.run(instance_id, wait=True)
    state = v2.client.get_orchestration_state(instance_id)
    assert state.runtime_status is Status.FAILED
    assert state.failure_details.error_type == "VersionMismatchError"
    message = state.failure_details.message
    assert "'1'" in message and "'2'" in message and "STRICT" in message and "FAIL" in message
    assert v2.store.inbox_size(instance_id) == 0
    assert cluster.take_sent() == []


def test_reject_keeps_the_inbox_and_routes_to_the_version_queue(cluster: Cluster) -> None:
    v1 = worker(cluster, "1.0")
    instance_id = start_waiting(cluster, v1)
    cluster.take_sent()
    v2 = worker(cluster, "2")
    raise_go(cluster, v1, instance_id)
    assert v2.runner.run(instance_id, wait=True)
    assert (v2.runner.rejected, v2.runner.episodes) == (1, 0)
    assert v2.store.inbox_size(instance_id) == 1
    (rerouted,) = cluster.take_sent()
    assert (rerouted.queue, rerouted.args, rerouted.kwargs, rerouted.eta) == \
        (f"{QUEUE}.v1", [instance_id, "v.approve"], {"rejections": 1}, None)
    # the worker of that version (its queue is spelled by the canonical "1") finishes it
    v1.runner.run(instance_id, wait=True, rejections=1)
    state = drive(cluster, v1, instance_id)
    assert state.runtime_status is Status.COMPLETED
    assert state.output["value"] == 6 and state.output["version"] == "1.0"


def test_an_activity_completed_on_a_rejecting_worker_is_kept_for_its_version(
        cluster: Cluster) -> None:
    v1 = worker(cluster, "1")
    instance_id = start_waiting(cluster, v1)
    raise_go(cluster, v1, instance_id)
    v1.runner.run(instance_id, wait=True)
    (activity,) = cluster.take_sent()
    assert activity.task == "v.double"
    # the v2 worker runs the activity: recording its result runs the episode inline, if allowed
    v2 = worker(cluster, "2")
    v2.app.tasks["v.double"].apply(args=activity.args, headers={"durable": activity.durable})
    assert (v2.runner.rejected, v2.runner.episodes) == (1, 0)
    assert v2.store.inbox_size(instance_id) == 1
    (rerouted,) = cluster.take_sent()
    assert rerouted.queue == f"{QUEUE}.v1"
    v1.runner.run(instance_id, wait=True, **rerouted.kwargs)
    state = v1.client.get_orchestration_state(instance_id)
    assert state.runtime_status is Status.COMPLETED and state.output["value"] == 6
    kinds = [e.kind for e in v1.client.get_orchestration_history(instance_id)]
    assert kinds.count("TaskCompleted") == 1


def test_current_or_older_runs_older_instances_on_newer_code(cluster: Cluster) -> None:
    old = start_waiting(cluster, worker(cluster, "1.9"))
    v110 = worker(cluster, "1.10", Match.CURRENT_OR_OLDER)
    new = start_waiting(cluster, v110)
    for instance_id in (old, new):
        raise_go(cluster, v110, instance_id)
        v110.runner.run(instance_id, wait=True)
        assert drive(cluster, v110, instance_id).runtime_status is Status.COMPLETED
    outputs = [v110.client.get_orchestration_state(i).output for i in (old, new)]
    assert outputs == [
        {"version": "1.9", "at_least_1_10": False, "gt_1_9": False, "value": 6},
        {"version": "1.10", "at_least_1_10": True, "gt_1_9": True, "value": 6},
    ]
    assert v110.runner.rejected == 0
    # and a newer instance waits for a newer worker
    newer = v110.client.schedule_new_orchestration("v.approve", input=1, version="1.11")
    cluster.take_sent()
    v110.runner.run(newer, wait=True)
    assert [m.queue for m in cluster.take_sent()] == [f"{QUEUE}.v1.11"]


def test_sweepers_leave_waiting_instances_to_workers_that_accept_them(cluster: Cluster) -> None:
    v1 = worker(cluster, "1")
    instance_id = start_waiting(cluster, v1)
    v2 = worker(cluster, "2")
    raise_go(cluster, v1, instance_id)
    v2.runner.run(instance_id, wait=True)
    cluster.take_sent()
    for _ in range(3):  # nothing to recover for v2: no episode, no message
        assert sweep(v2).woken == 0
    assert (v2.runner.rejected, cluster.take_sent()) == (1, [])
    assert sweep(worker(cluster, "2", failure=Failure.FAIL)).woken == 1  # it would fail it
    assert sweep(v1).woken == 1  # the worker that accepts it recovers it
    assert [m.queue for m in cluster.take_sent()] == [QUEUE, QUEUE]


def test_unversioned_instances_back_off_then_wait_for_a_sweeper(cluster: Cluster) -> None:
    unversioned = worker(cluster, None)
    instance_id = start_waiting(cluster, unversioned)
    v2 = worker(cluster, "2")
    raise_go(cluster, unversioned, instance_id)
    countdowns = []
    for rejections in range(REJECT_RESENDS + 1):
        v2.runner.run(instance_id, wait=True, rejections=rejections)
        sent = cluster.take_sent()
        countdowns.append(None if not sent else
                          (datetime.fromisoformat(sent[0].eta) - datetime.now(timezone.utc))
                          .total_seconds())
        assert all(m.queue == QUEUE and m.kwargs == {"rejections": rejections + 1} for m in sent)
    assert countdowns[-1] is None  # given up: the sweeper of an accepting worker wakes it
    assert [round(c) for c in countdowns[:-1]] == [2 ** n for n in range(REJECT_RESENDS)]
    assert sweep(v2).woken == 0
    assert sweep(worker(cluster, "2", Match.CURRENT_OR_OLDER)).woken == 1


def test_a_rejected_wake_up_rejected_again_backs_off(cluster: Cluster) -> None:
    v1 = worker(cluster, "1")
    instance_id = start_waiting(cluster, v1)
    raise_go(cluster, v1, instance_id)
    worker(cluster, "2").runner.run(instance_id, wait=True, rejections=1)  # misrouted once
    (sent,) = cluster.take_sent()
    assert sent.queue == f"{QUEUE}.v1" and sent.kwargs == {"rejections": 2}
    assert sent.eta is not None


def test_continue_as_new_with_a_new_version(cluster: Cluster) -> None:
    v1 = worker(cluster, "1", Match.CURRENT_OR_OLDER)
    instance_id = v1.client.schedule_new_orchestration("v.eternal", input=1)
    (wake,) = cluster.take_sent()
    v1.runner.run(instance_id, wait=True)
    # the next execution is version 2: the instance says so at once, and v1 leaves it alone
    assert v1.client.get_orchestration_state(instance_id).version == "2"
    (wake,) = cluster.take_sent()
    v1.runner.run(instance_id, wait=True)
    assert v1.runner.rejected == 1
    assert [m.queue for m in cluster.take_sent()] == [f"{QUEUE}.v2"]
    assert sweep(v1).woken == 0
    v2 = worker(cluster, "2")
    v2.runner.run(instance_id, wait=True)
    state = drive(cluster, v2, instance_id)
    assert state.runtime_status is Status.COMPLETED and state.output == "2"


def test_sub_orchestration_versions(cluster: Cluster) -> None:
    durable = worker(cluster, "5", Match.NONE)
    durable.orchestrator(child, name="v.pinned", version="3")
    instance_id = durable.client.schedule_new_orchestration("v.parent")
    state = drive(cluster, durable, instance_id)
    assert state.version == "5"
    assert state.output == ["5", "7", "3"]  # default_version, explicit, @orchestrator(version=)
    pinned = durable.client.schedule_new_orchestration("v.pinned")
    assert durable.client.get_orchestration_state(pinned).version == "3"
    explicit = durable.client.schedule_new_orchestration("v.pinned", version="4")
    assert durable.client.get_orchestration_state(explicit).version == "4"


def test_a_child_failed_for_its_version_fails_its_parent_call(cluster: Cluster) -> None:
    durable = worker(cluster, "5", failure=Failure.FAIL)
    instance_id = durable.client.schedule_new_orchestration("v.parent")
    state = drive(cluster, durable, instance_id)
    assert state.runtime_status is Status.FAILED  # the child explicitly at version 7 failed
    assert state.failure_details.error_type == "TaskFailedError"
    assert "VersionMismatchError" in state.failure_details.message
    child_state = durable.client.get_orchestration_state(f"{instance_id}:1")
    assert child_state.version == "7"
    assert child_state.failure_details.error_type == "VersionMismatchError"


@pytest.mark.parametrize(("selected", "expected"), [
    (None, {QUEUE, f"{QUEUE}.v2.1", "orders", "orders.v2.1"}),      # no -Q: everything
    ([QUEUE], {QUEUE, f"{QUEUE}.v2.1"}),                             # -Q episodes
    (["orders", "payments"], {"orders", "orders.v2.1", "payments"}),  # -Q orders,payments
    (["payments"], {"payments"}),                                    # activities only
])
def test_workers_consume_their_version_queues(tmp_path: Path, selected: list[str] | None,
                                              expected: set[str]) -> None:
    app = Celery("queues", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = QUEUE
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 's.sqlite3'}",
                      versioning=VersioningOptions(version="2.1.0"))
    durable.orchestrator(child, name="v.orders", queue="orders")
    queues = app.amqp.queues
    if selected is None:
        queues.select_add("orders")  # as if declared in task_queues
    else:
        queues.select(selected)

    class Worker:
        pass

    fake = Worker()
    fake.app = app  # type: ignore[attr-defined]
    VersionQueuesStep(fake)
    assert set(queues.consume_from) == expected
    durable.store.dispose()
