"""``ctx.send_event`` between two orchestrations on real workers: delivered once, also when the
sender's worker dies in the middle of the episode that sends it (before its commit, or after it
and before its messages are published)."""

from __future__ import annotations

from pathlib import Path

import manage_workflows as mw
import pytest
from manage_cluster import BACKENDS, manage_cluster

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h

pytestmark = pytest.mark.e2e
POINTS = [None, "send-event-loaded", "send-event-committed"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_sent_between_orchestrations_is_delivered_once(
        tmp_path: Path, backend: str, point: str | None) -> None:
    folder = str(tmp_path)
    marker = tmp_path / "crashed"
    with manage_cluster(tmp_path, backend) as cluster, cluster.logs_on_failure():
        client = cluster.client
        target = client.schedule_new_orchestration(mw.receiver)
        first = cluster.start_worker(point, marker, extra_env={"MANAGE_TARGET": target})
        cluster.wait_ready(first)
        client.wait_for_orchestration_start(target, timeout=30)
        iid = client.schedule_new_orchestration(mw.sender,
                                                input={"dir": folder, "target": target})
        if point is not None:
            assert first.proc.wait(timeout=60) == 1  # died mid-episode
            assert marker.read_text() == point
            cluster.start_worker(point, marker, extra_env={"MANAGE_TARGET": target})
        state = cluster.wait(iid)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        sent = [e for e in client.get_orchestration_history(iid) if e.kind == h.EVENT_SENT]
        assert len(sent) == 1 and sent[0].data == {"instance_id": target,
                                                   "data": {"from": iid}}
        client.raise_orchestration_event(target, "end")
        state = cluster.wait(target)
        assert state.output == {"from": iid}
        pings = [e for e in client.get_orchestration_history(target)
                 if e.kind == h.EVENT_RAISED and e.name == "ping"]
        assert len(pings) == 1, pings
        assert cluster.durable.store.inbox_size(target) == 0


def test_an_event_sent_to_an_unknown_instance_is_dropped(tmp_path: Path) -> None:
    folder = str(tmp_path)
    with manage_cluster(tmp_path, "sqlite-filesystem") as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker())
        iid = cluster.client.schedule_new_orchestration(
            mw.sender, input={"dir": folder, "target": "nobody-has-this-id"})
        assert cluster.wait(iid).runtime_status is OrchestrationStatus.COMPLETED
        assert "which does not exist: dropped" in cluster.logs()
        assert cluster.durable.store.inbox_size("nobody-has-this-id") == 0
