"""A worker process dies (``os._exit(1)``) at each crash point of an orchestration's life, once;
a fresh worker finishes the instance, and no task's completion is recorded twice.

The orchestration (`crash_workflows.parent`) runs an activity, a timer and a sub-orchestration
with an activity of its own, so that every point is reached. `crash_points` wraps the runtime
function of the point; the worker's thread pool runs tasks in its one process, so the crash ends
the worker with the messages it held unacknowledged: Redis keeps them for its 1-hour
visibility_timeout and the filesystem broker has already removed them, so what is recovered is
recovered by the store (the sweeper's outbox, inbox and overdue-task passes).

``make test`` runs each point once, on the backends in turn; ``make chaos`` runs every point on
every backend.
"""

from __future__ import annotations

from pathlib import Path

import crash_workflows as cw
import pytest
from crash_cluster import BACKENDS, crash_cluster
from crash_points import POINT_CONF, POINTS

from celery_durable import OrchestrationStatus

pytestmark = pytest.mark.e2e
CRASH_TIMEOUT = 60.0
#: every (backend, point) pair; those beyond one backend per point are marked chaos
CASES = [pytest.param(backend, point, id=f"{backend}-{point}",
                      marks=() if (i + j) % len(BACKENDS) == 0 else pytest.mark.chaos)
         for i, point in enumerate(POINTS) for j, backend in enumerate(BACKENDS)]


@pytest.mark.parametrize(("backend", "point"), CASES)
def test_a_worker_dies_at_a_crash_point_and_the_instance_completes(
        tmp_path: Path, backend: str, point: str) -> None:
    marker = tmp_path / "crashed"
    with crash_cluster(tmp_path, backend, POINT_CONF.get(point)) as cluster:
        first = cluster.start_worker(point, marker)
        cluster.wait_ready(first)
        instance_id = cluster.client.schedule_new_orchestration(cw.parent, input=1)
        with cluster.logs_on_failure():
            assert first.proc.wait(timeout=CRASH_TIMEOUT) == 1
            assert marker.read_text() == point
            cluster.start_worker(point, marker)  # armed too: the marker keeps it alive
            state = cluster.wait(instance_id)
            assert state.runtime_status is OrchestrationStatus.COMPLETED, state
            assert state.output == 31
            (child,) = [e.data["instance_id"] for e in cluster.scheduled(instance_id)
                        if e.kind == "SubOrchestrationCreated"]
            for iid in (instance_id, child):
                scheduled = {e.task_id for e in cluster.scheduled(iid)}
                assert cluster.completions(iid) == {task_id: 1 for task_id in scheduled}, iid
