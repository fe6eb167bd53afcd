"""The sweeper wakes an instance whose inbox has waited longer than ``durable_recovery_grace``
once per grace, not once per sweep: a wake-up it claimed recently is on its way (behind a
backlog, say), and a second one would only queue behind it. A claim older than the grace stands
for a late or lost wake-up: the sweeper renews it and wakes the instance again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from celery_durable import Durable
from celery_durable.runtime.sweeper import sweep

GRACE = 0.3


def test_a_recent_wake_up_is_not_sent_again(tmp_path: Path) -> None:
    app = Celery("sweeper-wakeups", broker="memory://", set_as_current=False)
    app.conf.update(durable_sweeper_enabled=False, durable_recovery_grace=GRACE,
                    task_default_queue=f"sweeper-wakeups-{uuid.uuid4().hex[:8]}")
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")

    @durable.orchestrator(name="wakeups.wait")
    def wait(ctx: Any, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))

    iid = durable.client.schedule_new_orchestration("wakeups.wait")
    assert durable.runner.run(iid, wait=True)  # started, waiting for "go"
    durable.client.raise_orchestration_event(iid, "go")  # its wake-up waits in a queue nobody reads
    time.sleep(GRACE + 0.1)
    assert sweep(durable).woken == 1  # the event waited out the grace: a wake-up again
    assert sweep(durable).woken == 0  # and that one is on its way: not another per sweep
    assert sweep(durable).woken == 0
    time.sleep(GRACE + 0.1)
    assert sweep(durable).woken == 1  # still nothing a grace later: late or lost, sent again
    durable.runner.run(iid, wait=True)  # a woken episode drains the inbox and the claim
    time.sleep(GRACE + 0.1)
    assert sweep(durable).woken == 0
    assert durable.client.get_orchestration_state(iid).runtime_status.value == "COMPLETED"
    durable.store.dispose()
