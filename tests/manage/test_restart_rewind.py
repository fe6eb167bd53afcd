"""Restart and rewind end to end on real workers (the embedded default, PostgreSQL + Redis):
only the failed work runs again after a rewind (executions counted), and a restart runs the
orchestration again from the beginning."""

from __future__ import annotations

from pathlib import Path

import manage_workflows as mw
import pytest
from manage_cluster import BACKENDS, manage_cluster

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h
from celery_durable.errors import OrchestrationStateError
from celery_durable.testing.replay_check import HistoryExport, check

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewind_runs_only_the_failed_work_again(tmp_path: Path, backend: str) -> None:
    folder = str(tmp_path)
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker())
        client = cluster.client
        # an activity that failed twice (its retry policy allows two attempts)
        iid = client.schedule_new_orchestration(mw.pipeline, input=folder)
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.FAILED, state
        assert mw.runs(folder) == {"first": 1, "flaky": 2}
        # a parent whose child failed
        pid = client.schedule_new_orchestration(mw.parent, input=folder)
        assert cluster.wait(pid).runtime_status is OrchestrationStatus.FAILED
        child_id = next(e.data["instance_id"] for e in client.get_orchestration_history(pid)
                        if e.kind == h.SUB_ORCHESTRATION_CREATED)
        assert client.get_orchestration_state(child_id).runtime_status is \
            OrchestrationStatus.FAILED
        assert mw.runs(folder) == {"first": 1, "flaky": 2, "parent-ok": 1, "child-ok": 1,
                                   "child-flaky": 1}

        (tmp_path / "fixed").touch()
        client.rewind_orchestration(iid, reason="the flaky service is back")
        client.rewind_orchestration(pid, reason="fixed the child")
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        assert state.output == ["first", "flaky", "last"]
        state = cluster.wait(pid)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        assert state.output == ["parent-ok", "child-ok", "child-flaky"]
        # what had succeeded did not run again; each failed activity ran once more
        assert mw.runs(folder) == {"first": 1, "flaky": 3, "last": 1, "parent-ok": 1,
                                   "child-ok": 1, "child-flaky": 2}
        for instance_id in (iid, pid, child_id):
            history = client.get_orchestration_history(instance_id)
            (record,) = [e for e in history if e.kind == h.EXECUTION_REWOUND]
            assert record.data["removed"], record
            assert not any(e.kind in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED)
                           for e in history[:record.seq])
            # the rewound history replays against the code (what `durable replay` checks)
            code = {"manage.pipeline": mw.pipeline, "manage.parent": mw.parent,
                    "manage.child": mw.child}[history[0].name]
            result = check(HistoryExport.from_events(history, instance_id), code)
            assert result.ok, result
        assert client.get_orchestration_history(iid)[-1].kind == h.EXECUTION_COMPLETED
        reasons = [e.data["reason"] for e in client.get_orchestration_history(pid)
                   if e.kind == h.EXECUTION_REWOUND]
        assert reasons == ["fixed the child"]
        with pytest.raises(OrchestrationStateError, match="only a FAILED instance"):
            client.rewind_orchestration(iid)


@pytest.mark.parametrize("backend", BACKENDS)
def test_restart_of_a_completed_and_of_a_running_instance(tmp_path: Path,
                                                          backend: str) -> None:
    folder = str(tmp_path)
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker())
        client = cluster.client
        done = client.schedule_new_orchestration(mw.waiter, input=folder, instance_id="w-done")
        client.raise_orchestration_event(done, "go", data=1)
        assert cluster.wait(done).output == ["waiter-ok", 1]
        old_history = client.get_orchestration_history(done)

        assert client.restart_orchestration(done) == done  # ended: same id, history replaced
        client.wait_for_orchestration_start(done, timeout=30)
        client.raise_orchestration_event(done, "go", data=2)
        assert cluster.wait(done).output == ["waiter-ok", 2]
        assert client.get_orchestration_history(done)[0].timestamp > old_history[-1].timestamp
        assert mw.runs(folder) == {"waiter-ok": 2}

        running = client.schedule_new_orchestration(mw.waiter, input=folder)
        client.wait_for_orchestration_start(running, timeout=30)
        other = client.restart_orchestration(running)  # still running: a new id
        assert other != running
        fresh = client.restart_orchestration(done, restart_with_new_instance_id=True)
        assert fresh not in (done, running, other)
        for iid, value in ((running, 3), (other, 4), (fresh, 5)):
            client.raise_orchestration_event(iid, "go", data=value)
            state = cluster.wait(iid)
            assert state.output == ["waiter-ok", value], state
            assert state.input == folder
        assert mw.runs(folder) == {"waiter-ok": 5}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewind_sends_a_failed_celery_task_again(tmp_path: Path, backend: str) -> None:
    folder = str(tmp_path)
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker())
        client = cluster.client
        iid = client.schedule_new_orchestration(mw.task_caller, input=folder)
        assert cluster.wait(iid).runtime_status is OrchestrationStatus.FAILED
        assert mw.runs(folder) == {"before-task": 1, "plain": 1}
        (tmp_path / "fixed").touch()
        client.rewind_orchestration(iid)
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        assert state.output == ["before-task", "plain"]
        assert mw.runs(folder) == {"before-task": 1, "plain": 2}
