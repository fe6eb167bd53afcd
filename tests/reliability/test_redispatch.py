"""Stranded activities are re-dispatched within a bounded time (real workers, PostgreSQL + Redis
with Celery's default settings: a killed worker's unacknowledged message would come back only
after Redis' 1-hour visibility_timeout).

A worker is SIGKILLed (its whole process group) while it runs a long activity; a second worker's
sweeper finds the activity overdue (``durable_activity_redispatch_after``, 3 s here), learns that
no live worker holds it and re-publishes it with the same Celery task id. An activity that a live
worker is still running is left alone.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import crash_workflows as cw
import pytest
from crash_cluster import crash_cluster
from workers import wait_until

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e
BOUND = 3.0
CONF = {"durable_activity_redispatch_after": BOUND}
#: Celery's default pool: the activity runs in a child process, the main one answers query_task
PREFORK = "prefork"


def spec(tmp: Path, seconds: float) -> dict[str, Any]:
    return {"seconds": seconds, "started": str(tmp / "started"), "runs": str(tmp / "runs")}


def runs(tmp: Path) -> int:
    path = tmp / "runs"
    return len(path.read_text().split()) if path.exists() else 0


def test_the_activity_of_a_killed_worker_is_rerun_within_the_bound(tmp_path: Path) -> None:
    with crash_cluster(tmp_path, "postgresql-redis", CONF) as cluster:
        first = cluster.start_worker(pool=PREFORK)
        cluster.wait_ready(first)
        instance_id = cluster.client.schedule_new_orchestration(cw.long,
                                                                input=spec(tmp_path, 600))
        with cluster.logs_on_failure():
            wait_until("the long activity started", (tmp_path / "started").exists,
                       time.monotonic() + 30, [first])
            # its message is no longer in the outbox (whose rows the sweeper would re-publish)
            wait_until("the outbox emptied", lambda: not cluster.durable.store.pending_outbox(
                datetime.now(timezone.utc) + timedelta(hours=1)), time.monotonic() + 30, [first])
            scheduled_at = cluster.scheduled(instance_id)[0].timestamp
            os.killpg(first.proc.pid, signal.SIGKILL)
            first.proc.wait(timeout=10)
            killed = time.monotonic()
            second = cluster.start_worker(pool=PREFORK)
            state = cluster.wait(instance_id, timeout=60)
            took = time.monotonic() - killed
            assert state.runtime_status is OrchestrationStatus.COMPLETED, state
            assert state.output == "done" and runs(tmp_path) == 2
            assert cluster.completions(instance_id) == {0: 1}
            assert "re-dispatched activity 'crash.long_once'" in second.log()
            finished = state.last_updated_at - scheduled_at
            print(f"killed -> completed: {took:.1f}s; scheduled -> completed: "
                  f"{finished.total_seconds():.1f}s (bound {BOUND}s)")
            # the bound, a sweep interval, the workers' answer (1 s) and a worker's start
            assert took < BOUND + 15


@pytest.mark.parametrize("backend", ["postgresql-redis",
                                     pytest.param("sqlite-filesystem", marks=pytest.mark.chaos)])
def test_an_activity_a_live_worker_runs_is_not_redispatched(tmp_path: Path,
                                                            backend: str) -> None:
    with crash_cluster(tmp_path, backend, CONF) as cluster:
        first = cluster.start_worker(pool=PREFORK)
        cluster.wait_ready(first)
        second = cluster.start_worker(pool=PREFORK)  # idle: it would take a re-dispatched message
        cluster.wait_ready(second)
        instance_id = cluster.client.schedule_new_orchestration(
            cw.long, input=spec(tmp_path, 3 * BOUND))
        with cluster.logs_on_failure():
            state = cluster.wait(instance_id, timeout=60)
            assert state.runtime_status is OrchestrationStatus.COMPLETED, state
            assert runs(tmp_path) == 1 and cluster.completions(instance_id) == {0: 1}
            assert "re-dispatched activity" not in cluster.logs()
