"""Activity heartbeats on real workers: an activity whose heartbeats stop for longer than its
``heartbeat_timeout`` is sent again, and the new run resumes from the last details reported."""

from __future__ import annotations

from pathlib import Path

import manage_workflows as mw
import pytest
from manage_cluster import BACKENDS, manage_cluster

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_silent_activity_is_sent_again_and_resumes_from_its_last_heartbeat(
        tmp_path: Path, backend: str) -> None:
    # the overdue-task re-dispatch would leave a run a live worker holds alone anyway; set far
    # away, it cannot be what sends the activity again here
    conf = {"durable_activity_redispatch_after": 600.0}
    with manage_cluster(tmp_path, backend, conf) as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker(concurrency=2))
        iid = cluster.client.schedule_new_orchestration(mw.stepper,
                                                        input={"dir": str(tmp_path)})
        try:
            state = cluster.wait(iid, timeout=60)
        finally:
            (tmp_path / "release").touch()  # the hung first run ends (its result is late)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        assert state.output == [3, 4]  # steps 0-2 were reported by the lost run
        assert mw.runs(str(tmp_path)) == {"steps": 2}
        assert "sent no heartbeat for" in cluster.logs()
        completions = [e for e in cluster.client.get_orchestration_history(iid)
                       if e.kind in (h.TASK_COMPLETED, h.TASK_FAILED)]
        assert len(completions) == 1
