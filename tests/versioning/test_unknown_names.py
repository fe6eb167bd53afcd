"""Orchestrators scheduled by name where their code is not imported: the client needs none, and
the worker that runs an episode decides, as for a version (FAIL fails the instance with
`UnknownNameError`; REJECT leaves it waiting, at no cost, for a worker that knows the name).

Played episode by episode on one SQLite store and broker folder (see `versioning_cluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_versioning_episodes import declare, drive
from versioning_cluster import QUEUE, Cluster

from celery_durable import Durable, OrchestrationStatus, VersioningOptions
from celery_durable import VersionFailureStrategy as Failure
from celery_durable.runtime.durable import REJECT_RESENDS
from celery_durable.runtime.messages import EPISODE_TASK
from celery_durable.runtime.start_queue import SUFFIX as STARTS
from celery_durable.runtime.sweeper import sweep

Status = OrchestrationStatus


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(tmp_path, stack)


def codeless(cluster: Cluster, failure: Failure = Failure.FAIL) -> Durable:
    """A worker (or web tier) that imports no orchestrator: one other orchestrator only."""

    def other(ctx: object, _: object) -> None:
        return None

    durable = cluster.durable(VersioningOptions(failure_strategy=failure))
    durable.orchestrator(other, name="web.other")
    return durable


def with_code(cluster: Cluster) -> Durable:
    return cluster.durable(None, declare)


def test_a_client_without_the_code_schedules_by_name(cluster: Cluster) -> None:
    web = codeless(cluster)
    instance_id = web.client.schedule_new_orchestration("v.approve", input=3)
    state = web.client.get_orchestration_state(instance_id)
    assert (state.name, state.runtime_status) == ("v.approve", Status.PENDING)
    (wake,) = cluster.take_sent()
    # a new instance's first episode waits on the starts queue (runtime.start_queue)
    assert (wake.queue, wake.task, wake.args) == (QUEUE + STARTS, EPISODE_TASK,
                                                  [instance_id, "v.approve"])
    worker = with_code(cluster)
    assert worker.runner.run(instance_id, wait=True)
    worker.client.raise_orchestration_event(instance_id, "go")
    assert drive(cluster, worker, instance_id).output["value"] == 6


def test_fail_fails_an_unknown_name_naming_what_the_worker_knows(cluster: Cluster) -> None:
    instance_id = with_code(cluster).client.schedule_new_orchestration("v.aprove")  # a typo
    cluster.take_sent()
    worker = codeless(cluster)
    assert worker.runner.run(instance_id, wait=True)
    state = worker.client.get_orchestration_state(instance_id)
    assert state.runtime_status is Status.FAILED
    assert state.failure_details.error_type == "UnknownNameError"
    assert "no orchestrator is registered as 'v.aprove' (registered: " in \
        state.failure_details.message
    assert "web.other" in state.failure_details.message
    assert cluster.take_sent() == []


def test_reject_keeps_it_waiting_until_a_worker_knows_the_name(cluster: Cluster) -> None:
    """Clients shipped before workers: the instance waits (backing off, then parked) and the
    sweeper of the first worker that knows the name starts it; nothing is lost."""
    web = codeless(cluster, Failure.REJECT)
    instance_id = web.client.schedule_new_orchestration("v.approve", input=5)
    cluster.take_sent()
    countdowns = []
    for rejections in range(REJECT_RESENDS + 1):
        assert web.runner.run(instance_id, wait=True, rejections=rejections)
        sent = cluster.take_sent()
        assert all(m.queue == QUEUE and m.kwargs == {"rejections": rejections + 1} for m in sent)
        countdowns.append(None if not sent else
                          (datetime.fromisoformat(sent[0].eta) - datetime.now(timezone.utc))
                          .total_seconds())
    assert countdowns[-1] is None  # parked: no message goes round any more
    assert [round(c) for c in countdowns[:-1]] == [2 ** n for n in range(REJECT_RESENDS)]
    assert web.client.get_orchestration_state(instance_id).runtime_status is Status.PENDING
    assert web.runner.episodes == 0 and web.runner.rejected == REJECT_RESENDS + 1
    for _ in range(3):  # the rejecting worker's sweeper leaves it alone
        assert sweep(web).woken == 0
    assert sweep(codeless(cluster, Failure.FAIL)).woken == 1  # a FAIL worker would fail it
    cluster.take_sent()
    worker = with_code(cluster)
    assert sweep(worker).woken == 1
    (wake,) = cluster.take_sent()
    assert worker.runner.run(wake.args[0], wait=True)
    assert worker.client.get_orchestration_state(instance_id).runtime_status is Status.RUNNING
    worker.client.raise_orchestration_event(instance_id, "go")
    assert drive(cluster, worker, instance_id).output["value"] == 10


def test_a_sub_orchestration_by_name_runs_where_its_code_is(cluster: Cluster) -> None:
    """The parent's worker does not import the child: it creates the child all the same."""
    parents_only = cluster.durable(VersioningOptions(failure_strategy=Failure.REJECT))

    def parent(ctx: object, n: int) -> object:
        value = yield ctx.call_sub_orchestrator("v.child", input=n)  # type: ignore[attr-defined]
        return ["child said", value]

    parents_only.orchestrator(parent, name="p.parent")
    instance_id = parents_only.client.schedule_new_orchestration("p.parent", input=1)
    cluster.take_sent()
    assert parents_only.runner.run(instance_id, wait=True)
    (child_wake,) = cluster.take_sent()
    child_id = child_wake.args[0]
    assert child_wake.args[1] == "v.child" and child_wake.queue == QUEUE
    assert parents_only.runner.run(child_id, wait=True)  # rejected: it does not know v.child
    assert parents_only.runner.rejected == 1
    cluster.take_sent()
    assert with_code(cluster).runner.run(child_id, wait=True)  # the child ends at once
    (parent_wake,) = cluster.take_sent()
    assert parents_only.runner.run(parent_wake.args[0], wait=True)
    state = parents_only.client.get_orchestration_state(instance_id)
    assert state.runtime_status is Status.COMPLETED and state.output == ["child said", None]


def test_client_episodes_leave_unknown_names_to_the_workers(cluster: Cluster) -> None:
    web = codeless(cluster)
    web.app.conf.durable_client_episodes = True
    instance_id = web.client.schedule_new_orchestration("v.approve", input=1)
    # not run (and failed) here: a worker that knows the name gets the wake-up
    assert web.client.get_orchestration_state(instance_id).runtime_status is Status.PENDING
    (wake,) = cluster.take_sent()
    assert wake.args == [instance_id, "v.approve"]
    worker = with_code(cluster)
    assert worker.runner.run(instance_id, wait=True)
    web.client.raise_orchestration_event(instance_id, "go")
    assert web.store.inbox_size(instance_id) == 1  # delivered, and left to a worker
    assert drive(cluster, worker, instance_id).output["value"] == 2
