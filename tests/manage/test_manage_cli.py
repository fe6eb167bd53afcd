"""``durable restart`` and ``durable rewind`` (and ``terminate --cancel-running``) on real
workers (the embedded default)."""

from __future__ import annotations

from pathlib import Path

import manage_workflows as mw
import pytest
from click.testing import CliRunner, Result
from manage_cluster import manage_cluster

from celery_durable import OrchestrationStatus
from celery_durable.engine import history as h

pytestmark = pytest.mark.e2e


def _invoke(app: object, *args: str) -> Result:
    from celery.bin.base import CLIContext

    from celery_durable.cli import durable

    obj = CLIContext(app=app, no_color=True, workdir=None)
    return CliRunner().invoke(durable, list(args), obj=obj, catch_exceptions=True)


def test_restart_and_rewind_from_the_command_line(tmp_path: Path) -> None:
    folder = str(tmp_path)
    with manage_cluster(tmp_path, "sqlite-filesystem") as cluster, cluster.logs_on_failure():
        cluster.wait_ready(cluster.start_worker())
        client, app = cluster.client, cluster.app
        iid = client.schedule_new_orchestration(mw.pipeline, input=folder, instance_id="p-1")
        assert cluster.wait(iid).runtime_status is OrchestrationStatus.FAILED

        refused = _invoke(app, "rewind", "nobody")
        assert refused.exit_code == 1 and "no orchestration instance has id 'nobody'" in \
            refused.stderr and "Traceback" not in refused.output
        (tmp_path / "fixed").touch()
        done = _invoke(app, "rewind", iid, "--reason", "service fixed")
        assert done.exit_code == 0, done.output
        assert done.stdout.strip() == "Rewound p-1; it runs again from its failures."
        assert cluster.wait(iid).output == ["first", "flaky", "last"]
        rewound = [e for e in client.get_orchestration_history(iid)
                   if e.kind == h.EXECUTION_REWOUND]
        assert rewound[0].data["reason"] == "service fixed"
        again = _invoke(app, "rewind", iid)
        assert again.exit_code == 1 and "only a FAILED instance can be rewound" in again.stderr

        same = _invoke(app, "restart", iid)
        assert same.exit_code == 0 and same.stdout.strip() == "Restarted p-1."
        assert cluster.wait(iid).runtime_status is OrchestrationStatus.COMPLETED
        fresh = _invoke(app, "restart", iid, "--new-id")
        assert fresh.exit_code == 0, fresh.output
        other = fresh.stdout.strip().rsplit(" ", 1)[-1].rstrip(".")
        assert other != iid and cluster.wait(other).output == ["first", "flaky", "last"]
        assert mw.runs(folder) == {"first": 3, "flaky": 5, "last": 3}
