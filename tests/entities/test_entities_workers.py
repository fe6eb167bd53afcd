"""Durable entities end to end on real workers (see conftest.py for the backends): the counter
from clients and orchestrations at once (no lost update), 50 concurrent transfers between 5
accounts in critical sections (the total conserved, no account below zero, no lock left held),
a failing operation, locks released on failure and termination, delayed signals, and a worker
killed in the middle of an operation (the operation's state change is committed once)."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import entity_workflows as wf
import pytest
from entity_cluster import Cluster

from celery_durable import EntityInstanceId, OrchestrationStatus

pytestmark = pytest.mark.e2e
COMPLETED = OrchestrationStatus.COMPLETED


def unique(prefix: str) -> str:
    return f"{prefix}{random.randrange(10**9)}"


def test_counter_from_concurrent_clients_and_orchestrations(cluster: Cluster) -> None:
    key = unique("c")
    counter = EntityInstanceId("counter", key)

    def signals() -> None:
        for _ in range(10):
            cluster.client.signal_entity(counter, "add", input=1)

    threads = [threading.Thread(target=signals) for _ in range(4)]
    for thread in threads:
        thread.start()
    ids = [cluster.client.schedule_new_orchestration(wf.add_many,
                                                     input={"key": key, "times": 3})
           for _ in range(10)]
    for thread in threads:
        thread.join()
    assert all(s.runtime_status is COMPLETED for s in cluster.complete(ids))
    expected = 40 + 10 * 4

    def settled() -> bool:
        state = cluster.client.get_entity(counter)
        return state is not None and state.get_state() == expected

    cluster.wait(f"counter {key} reaches {expected}", settled)
    state = cluster.client.get_entity(counter)
    assert state is not None and state.backlog_queue_size == 0 and state.locked_by is None


def test_concurrent_transfers_in_critical_sections_conserve_the_total(cluster: Cluster) -> None:
    keys = [unique("acct") for _ in range(5)]
    for key in keys:
        cluster.client.signal_entity(wf.account(key), "deposit", input=100)
    cluster.wait("the deposits", lambda: all(
        (m := cluster.client.get_entity(wf.account(k))) is not None and m.get_state() == 100
        for k in keys))
    rng = random.Random(19)
    ids = []
    for _ in range(50):
        source, target = rng.sample(keys, 2)
        ids.append(cluster.client.schedule_new_orchestration(
            wf.transfer, input={"source": source, "target": target,
                                "amount": rng.randint(1, 80)}))
    states = cluster.complete(ids, timeout=240)
    assert [(s.runtime_status, s.failure_details) for s in states
            if s.runtime_status is not COMPLETED] == []
    assert sum(s.output for s in states) > 0  # money moved

    def settled() -> list[int] | None:
        # the last sections' unlocks are committed as their orchestrations end: they reach
        # the accounts just after
        metadata = [cluster.client.get_entity(wf.account(k)) for k in keys]
        if all(m is not None and m.locked_by is None and m.backlog_queue_size == 0
               for m in metadata):
            return [m.get_state() for m in metadata if m is not None]
        return None

    balances = cluster.wait("every lock released", settled)
    assert sum(balances) == 500 and min(balances) >= 0


def test_a_failing_operation_fails_the_call_and_leaves_the_state(cluster: Cluster) -> None:
    key = unique("f")
    (state,) = cluster.complete([cluster.client.schedule_new_orchestration(wf.call_failing,
                                                                         input=key)])
    assert state.output == {"error": "ValueError", "value": 5}


def test_locks_are_released_on_failure_and_on_termination(cluster: Cluster) -> None:
    key = unique("l")
    (failed,) = cluster.complete([cluster.client.schedule_new_orchestration(
        wf.fail_inside_lock, input=key)])
    assert failed.runtime_status is OrchestrationStatus.FAILED
    waiting = cluster.client.schedule_new_orchestration(wf.wait_inside_lock, input=key)
    cluster.wait("the second section holds the lock", lambda: (
        (m := cluster.client.get_entity(wf.account(key))) is not None
        and m.locked_by == waiting and m.get_state() == 2))
    cluster.client.signal_entity(wf.account(key), "deposit", input=10)
    cluster.client.terminate_orchestration(waiting)
    cluster.wait("the lock is released and the waiting deposit runs", lambda: (
        (m := cluster.client.get_entity(wf.account(key))) is not None
        and m.locked_by is None and m.get_state() == 12))


def test_signals_with_a_signal_time_run_then(cluster: Cluster) -> None:
    counter = EntityInstanceId("counter", unique("t"))
    at = datetime.now(timezone.utc) + timedelta(seconds=3)
    cluster.client.signal_entity(counter, "add", input=1, signal_time=at)
    time.sleep(1)  # nothing may happen before the signal time: checked once, a second in
    assert cluster.client.get_entity(counter) is None
    cluster.wait("the delayed signal", lambda: (
        (m := cluster.client.get_entity(counter)) is not None and m.get_state() == 1))
    assert datetime.now(timezone.utc) >= at


def test_a_worker_killed_mid_operation_applies_it_once(pg_redis: Cluster, tmp_path: Path
                                                        ) -> None:
    import os
    import signal

    marks = Path(pg_redis.env["ENT_MARKS"])
    counter = EntityInstanceId("counter", unique("k"))
    pg_redis.client.signal_entity(counter, "slow_add", input=1)
    first = pg_redis.wait("the operation starts", lambda: marks.exists()
                          and marks.read_text().split())
    os.kill(int(first[0]), signal.SIGKILL)  # the pool process, mid-operation
    pg_redis.wait("the operation runs again", lambda: len(marks.read_text().split()) == 2)
    pg_redis.wait("the counter is 1", lambda: (
        (m := pg_redis.client.get_entity(counter)) is not None and m.get_state() == 1))
    pg_redis.client.signal_entity(counter, "add", input=1)
    pg_redis.wait("the next operation", lambda: (
        (m := pg_redis.client.get_entity(counter)) is not None and m.get_state() == 2))
    assert len(marks.read_text().split()) == 2
