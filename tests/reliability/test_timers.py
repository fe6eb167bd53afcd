"""Timers on real workers (PostgreSQL + Redis): many due in the same second, across a restart of
every worker, and beyond the ETA horizon (kept in the store until the sweeper sends them).

Every test checks each instance's history: one TimerFired per TimerCreated, never before its
``fire_at``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import edge_workflows as ew
import pytest
from edge_cluster import EdgeCluster, edge_cluster

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e

HORIZON = 6.0  # durable_timer_horizon (seconds) of these workers
COMPLETED = OrchestrationStatus.COMPLETED


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    conf = {"durable_timer_horizon": HORIZON, "durable_sweep_interval": 0.5}
    with edge_cluster(tmp_path_factory.mktemp("timers"), workers=2, conf=conf) as c:
        yield c


def schedule_timers(cluster: EdgeCluster, instances: int, per_instance: int,
                    at: datetime) -> list[str]:
    spec = {"at": at.isoformat(), "count": per_instance}
    return [cluster.client.schedule_new_orchestration(ew.timers, input=spec)
            for _ in range(instances)]


def assert_fired_once(cluster: EdgeCluster, instance_id: str, count: int) -> None:
    history = cluster.client.get_orchestration_history(instance_id)
    created = {e.task_id: datetime.fromisoformat(e.data["fire_at"])
               for e in history if e.kind == "TimerCreated"}
    fired = Counter(e.task_id for e in history if e.kind == "TimerFired")
    assert len(created) == count, history
    assert fired == Counter(dict.fromkeys(created, 1)), f"fired per timer: {fired}"
    for event in history:
        if event.kind == "TimerFired":
            assert event.timestamp >= created[event.task_id], event


def wait_all(cluster: EdgeCluster, ids: list[str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for iid in ids:
        state = cluster.wait(iid, timeout=max(1.0, deadline - time.monotonic()))
        assert state.runtime_status is COMPLETED and state.output == count, state
        assert_fired_once(cluster, iid, count)


def test_1000_timers_due_in_the_same_second_fire_once_each(cluster: EdgeCluster) -> None:
    """50 instances with 20 timers each, all due at one instant within the horizon."""
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    with cluster.logs_on_failure():
        started = time.monotonic()
        ids = schedule_timers(cluster, 50, 20, at)
        wait_all(cluster, ids, 20, timeout=90)
        print(f"1,000 timers due at one instant: all fired {time.monotonic() - started:.1f}s "
              f"after scheduling began ({(datetime.now(timezone.utc) - at).total_seconds():.1f}s "
              "after they were due, checks included)")


def test_timers_survive_a_restart_of_every_worker(cluster: EdgeCluster) -> None:
    """Timers within the horizon (sent to the broker, held by the workers as ETA tasks) and
    beyond it (kept in the store until a sweeper sends them; both workers' sweepers race for
    them) while every worker stops (warm shutdown) and new ones start: each fires once."""
    now = datetime.now(timezone.utc)
    near_at = now + timedelta(seconds=HORIZON - 1)
    far_at = now + timedelta(seconds=HORIZON + 3)
    with cluster.logs_on_failure():
        near = schedule_timers(cluster, 10, 2, near_at)
        far = schedule_timers(cluster, 10, 2, far_at)
        for iid in near + far:
            cluster.client.wait_for_orchestration_start(iid, timeout=30)
        kept = {t.instance_id for t in cluster.durable.store.due_timers(far_at, 500)}
        assert kept == set(far), "near timers go to the broker, far ones stay in the store"
        cluster.stop_workers()
        stopped = datetime.now(timezone.utc)
        assert stopped < near_at, "the workers took too long to stop: raise HORIZON"
        cluster.workers = [cluster.start_worker(), cluster.start_worker()]
        wait_all(cluster, near + far, 2, timeout=60)
        print(f"timers across a restart: workers stopped {(stopped - now).total_seconds():.1f}s "
              f"after scheduling, {(near_at - stopped).total_seconds():.1f}s before the near "
              "timers were due; every timer fired once")
