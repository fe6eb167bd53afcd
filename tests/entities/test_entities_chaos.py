"""The account-transfer workload under random worker kills (PostgreSQL + Redis db 5): two
prefork workers, a random one's whole process group SIGKILLed every 2-4 s and replaced, while
transfers between ledger entities run in critical sections. What must hold: every transfer
completes, the total is conserved, no account goes below zero, no operation is applied twice
(each ledger counts the operation ids it saw again), and no lock is left held.

``make chaos`` (marker ``chaos``) runs a short version and a long one; ``make test`` relies on
``test_entities_workers``' single kill."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import entity_workflows as wf
import pytest
from entity_cluster import Cluster, _cluster

from celery_durable import EntityInstanceId, OrchestrationStatus

pytestmark = pytest.mark.e2e


def kill_group(cluster: Cluster, rng: random.Random) -> None:
    worker = rng.choice([w for w in cluster.workers if w.proc.poll() is None])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.wait()
    cluster.workers.remove(worker)
    cluster.dead.append(worker)
    cluster.start_worker("chaos")


def run_transfers(cluster: Cluster, accounts: int, count: int, seconds: float,
                  seed: int) -> int:
    rng = random.Random(seed)
    keys = [f"l{seed}-{i}" for i in range(accounts)]
    for key in keys:
        cluster.client.signal_entity(EntityInstanceId("ledger", key), "deposit",
                                     input={"amount": 100, "op": f"seed:{key}"})
    cluster.start_worker("ent2")
    ids: list[str] = []
    start = time.monotonic()
    next_kill, kills = start + rng.uniform(2, 4), 0
    while len(ids) < count or time.monotonic() < start + seconds:
        now = time.monotonic()
        due = min(count, int(count * (now - start) / seconds) + 1)
        while len(ids) < due:
            source, target = rng.sample(keys, 2)
            ids.append(cluster.client.schedule_new_orchestration(
                wf.ledger_transfer, input={"source": source, "target": target,
                                           "amount": rng.randint(1, 60)}))
        if now >= next_kill and now < start + seconds:
            kill_group(cluster, rng)
            kills += 1
            next_kill = now + rng.uniform(2, 4)
        time.sleep(0.05)
    states = cluster.complete(ids, timeout=300)
    assert [s.runtime_status for s in states
            if s.runtime_status is not OrchestrationStatus.COMPLETED] == []

    def settled() -> list[dict] | None:
        found = [cluster.client.get_entity(EntityInstanceId("ledger", k)) for k in keys]
        if all(m is not None and m.locked_by is None and m.backlog_queue_size == 0
               for m in found):
            return [m.get_state() for m in found if m is not None]
        return None

    ledgers = cluster.wait("every lock released and every inbox empty", settled, timeout=120)
    assert sum(s["balance"] for s in ledgers) == 100 * accounts
    assert min(s["balance"] for s in ledgers) >= 0
    assert sum(s["duplicates"] for s in ledgers) == 0
    assert kills >= 2
    return kills


@pytest.mark.chaos
def test_transfers_under_random_worker_kills_short(tmp_path: Path) -> None:
    with _cluster("postgresql-redis", tmp_path) as cluster:
        run_transfers(cluster, accounts=5, count=50, seconds=10, seed=3)


@pytest.mark.chaos
def test_transfers_under_random_worker_kills_long(tmp_path: Path) -> None:
    with _cluster("postgresql-redis", tmp_path) as cluster:
        kills = run_transfers(cluster, accounts=5, count=400, seconds=60, seed=11)
        print(f"\n400 transfers between 5 ledgers, {kills} worker kills: total conserved, "
              "no duplicate, no lock left")
