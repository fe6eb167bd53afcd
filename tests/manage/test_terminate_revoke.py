"""Terminate revokes the work an instance sent (real prefork workers): with
``cancel_running=True`` a long activity is killed and nothing is recorded after; without it, an
activity that completes after its instance ended is recorded nowhere and logged once. Suspend
with ``cancel_running=True`` kills it too, and the resume sends it again."""

from __future__ import annotations

import time
from pathlib import Path

import manage_workflows as mw
import pytest
from manage_cluster import BACKENDS, manage_cluster
from workers import wait_until

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h

pytestmark = pytest.mark.e2e


def _ticks(folder: Path) -> int:
    path = folder / "ticks"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminate_with_cancel_running_stops_a_long_activity(tmp_path: Path,
                                                             backend: str) -> None:
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        worker = cluster.start_worker(pool="prefork", concurrency=2)
        cluster.wait_ready(worker)
        client = cluster.client
        iid = client.schedule_new_orchestration(
            mw.long_runner, input={"dir": str(tmp_path), "seconds": 60})
        wait_until("the activity ticks", lambda: _ticks(tmp_path) > 2,
                   time.monotonic() + 30, cluster.workers)
        client.terminate_orchestration(iid, output="stop", cancel_running=True)
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.TERMINATED
        wait_until("the worker terminated the activity", lambda: "Terminating" in worker.log(),
                   time.monotonic() + 30, cluster.workers)
        ticks = _ticks(tmp_path)
        time.sleep(0.5)  # ten ticks' worth: a live activity would have written more
        assert _ticks(tmp_path) == ticks
        history = client.get_orchestration_history(iid)
        assert history[-1].kind == h.EXECUTION_COMPLETED
        assert not [e for e in history if e.kind in (h.TASK_COMPLETED, h.TASK_FAILED)]
        assert cluster.durable.store.inbox_size(iid) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_result_after_the_end_is_recorded_nowhere_and_logged_once(tmp_path: Path,
                                                                    backend: str) -> None:
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        worker = cluster.start_worker(pool="prefork", concurrency=2)
        cluster.wait_ready(worker)
        client = cluster.client
        iid = client.schedule_new_orchestration(
            mw.long_runner, input={"dir": str(tmp_path), "seconds": 1.5})
        wait_until("the activity ticks", lambda: _ticks(tmp_path) > 2,
                   time.monotonic() + 30, cluster.workers)
        client.terminate_orchestration(iid)  # revokes; the run in progress goes on
        assert cluster.wait(iid).runtime_status is OrchestrationStatus.TERMINATED
        before = client.get_orchestration_history(iid)
        line = f"instance {iid} has ended (TERMINATED): dropped TaskCompleted"
        wait_until("the late result is dropped", lambda: line in worker.log(),
                   time.monotonic() + 30, cluster.workers)
        assert worker.log().count(line) == 1
        assert client.get_orchestration_history(iid) == before
        assert cluster.durable.store.inbox_size(iid) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_suspend_with_cancel_running_kills_the_activity_and_resume_sends_it_again(
        tmp_path: Path, backend: str) -> None:
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        worker = cluster.start_worker(pool="prefork", concurrency=2)
        cluster.wait_ready(worker)
        client = cluster.client
        iid = client.schedule_new_orchestration(
            mw.long_runner, input={"dir": str(tmp_path), "seconds": 60, "later_seconds": 0.2})
        wait_until("the activity ticks", lambda: _ticks(tmp_path) > 2,
                   time.monotonic() + 30, cluster.workers)
        client.suspend_orchestration(iid, reason="maintenance", cancel_running=True)
        wait_until("the worker terminated the activity", lambda: "Terminating" in worker.log(),
                   time.monotonic() + 30, cluster.workers)
        wait_until("suspended", lambda: client.get_orchestration_state(iid).runtime_status
                   is OrchestrationStatus.SUSPENDED, time.monotonic() + 30, cluster.workers)
        assert mw.runs(str(tmp_path)) == {"long": 1}
        client.resume_orchestration(iid)
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.COMPLETED and \
            state.output == "finished"
        assert mw.runs(str(tmp_path)) == {"long": 2}
        completions = [e for e in client.get_orchestration_history(iid)
                       if e.kind in (h.TASK_COMPLETED, h.TASK_FAILED)]
        assert len(completions) == 1
