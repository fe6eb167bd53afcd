"""Races on real workers (two prefork workers, PostgreSQL + Redis): one instance receiving 200
events from 8 threads while its activities complete, and a burst of wake-ups for one instance
reaching every worker process at once.

What must hold: each event is delivered exactly once and in order per sender; every task id has
one completion; history seqs are contiguous (two episodes that both committed on the same state
would record events twice or collide on a seq); no worker logs an error.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import edge_workflows as ew
import pytest
from edge_cluster import EdgeCluster, edge_cluster

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e

SENDERS, PER_SENDER = 8, 25
SCHEDULING = {"TaskScheduled", "TimerCreated", "SubOrchestrationCreated"}
COMPLETIONS = {"TaskCompleted", "TaskFailed", "TimerFired", "SubOrchestrationCompleted",
               "SubOrchestrationFailed"}
BAD_LOG_MARKERS = ("Traceback", "IntegrityError", "UniqueViolation", "deadlock", "ERROR/")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    with edge_cluster(tmp_path_factory.mktemp("races"), workers=2) as c:
        yield c


def raise_from_threads(cluster: EdgeCluster, instance_id: str,
                       during: Any = None) -> list[BaseException]:
    """SENDERS threads each raise PER_SENDER events {"s": sender, "n": 0, 1, ...} in order,
    all released at once; ``during`` runs in this thread meanwhile."""
    errors: list[BaseException] = []
    gate = threading.Barrier(SENDERS + 1)

    def send(sender: int) -> None:
        gate.wait()
        try:
            for n in range(PER_SENDER):
                cluster.client.raise_orchestration_event(instance_id, "e",
                                                         data={"s": sender, "n": n})
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in range(SENDERS)]
    for thread in threads:
        thread.start()
    gate.wait()
    if during is not None:
        during()
    for thread in threads:
        thread.join(60)
    return errors


def assert_consistent(cluster: EdgeCluster, instance_id: str) -> list[Any]:
    """Each event once and in order per sender, each task once, seqs contiguous."""
    state = cluster.wait(instance_id, timeout=60)
    assert state.runtime_status is OrchestrationStatus.COMPLETED, state
    events = [(e["s"], e["n"]) for e in state.output["events"]]
    assert len(events) == SENDERS * PER_SENDER, f"{len(events)} events delivered"
    assert Counter(events) == Counter({(s, n): 1 for s in range(SENDERS)
                                      for n in range(PER_SENDER)}), "an event lost or doubled"
    for sender in range(SENDERS):
        order = [n for s, n in events if s == sender]
        assert order == list(range(PER_SENDER)), f"sender {sender} out of order: {order}"
    history = cluster.client.get_orchestration_history(instance_id)
    assert [e.seq for e in history] == list(range(len(history)))
    assert sum(e.kind == "EventRaised" for e in history) == SENDERS * PER_SENDER
    scheduled = Counter(e.task_id for e in history if e.kind in SCHEDULING)
    completed = Counter(e.task_id for e in history if e.kind in COMPLETIONS)
    assert set(scheduled.values()) == {1} and completed == scheduled, (scheduled, completed)
    logs = cluster.logs()
    found = [marker for marker in BAD_LOG_MARKERS if marker in logs]
    assert not found, f"worker logs have {found}"
    return history


def test_200_events_from_8_threads_while_activities_complete(cluster: EdgeCluster) -> None:
    spec = {"events": SENDERS * PER_SENDER, "activities": 40, "every": 20}
    with cluster.logs_on_failure():
        started = time.monotonic()
        iid = cluster.client.schedule_new_orchestration(ew.collect, input=spec)
        errors = raise_from_threads(cluster, iid)
        assert not errors, errors
        history = assert_consistent(cluster, iid)
        print(f"200 events from 8 threads, 50 activities: {len(history)} history events, "
              f"{time.monotonic() - started:.1f}s")


def test_a_burst_of_wake_ups_reaches_every_worker_at_once(cluster: EdgeCluster) -> None:
    """While events and activity completions arrive, 200 wake-ups for the instance are sent at
    once: the four pool processes of the two workers all try to run its episode."""
    spec = {"events": SENDERS * PER_SENDER, "activities": 40, "every": 10}
    with cluster.logs_on_failure():
        iid = cluster.client.schedule_new_orchestration(ew.collect, input=spec)
        cluster.client.wait_for_orchestration_start(iid, timeout=30)

        def burst() -> None:
            for _ in range(4):
                for _ in range(50):
                    cluster.durable.wake(iid, "edge.collect")
                time.sleep(0.05)

        errors = raise_from_threads(cluster, iid, during=burst)
        assert not errors, errors
        assert_consistent(cluster, iid)
        worked = [w.node for w in cluster.workers if "celery_durable.episode" in w.log()]
        assert len(worked) == 2, f"only {worked} ran episodes"
