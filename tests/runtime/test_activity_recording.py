"""An activity whose outcome cannot be written at once (the database connection dropped, the
database restarts) writes it again in place, rather than retrying the Celery task, which would
run the activity again. Found by the PostgreSQL restart test (tests/reliability/test_restarts.py):
every activity that finished during the restart ran twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy.exc import OperationalError

from celery_durable import Durable
from celery_durable.engine import history as h
from celery_durable.runtime import activity as activity_module


def test_a_dropped_connection_while_recording_does_not_run_the_activity_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("recording-test", broker="memory://", set_as_current=False)
    # the memory broker lives as long as this process: a queue of the test's own
    app.conf.task_default_queue = f"recording-test-{uuid.uuid4().hex[:8]}"
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    ran: list[Any] = []

    @durable.activity(name="rec.counted")
    def counted(ctx: Any, value: Any) -> Any:
        ran.append(value)
        return value

    @durable.orchestrator(name="rec.counts")
    def counts(ctx: Any, value: Any) -> Any:
        return (yield ctx.call_activity(counted, input=value))

    iid = durable.client.schedule_new_orchestration("rec.counts", input=7)
    assert durable.runner.run(iid, wait=True)
    record = durable.store.get_instance(iid)
    assert record is not None

    real_record, failures = durable.record, [2]

    def flaky_record(*args: Any, **kwargs: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("INSERT ...", {}, Exception("server closed the connection"))
        real_record(*args, **kwargs)

    monkeypatch.setattr(durable, "record", flaky_record)
    monkeypatch.setattr(activity_module, "RECORD_BACKOFF", 0.0)
    header = [iid, record.execution_id, 0, 1, "rec.counts"]
    result = app.tasks["rec.counted"].apply(args=[7], headers={"durable": header})

    assert result.successful(), result.traceback
    assert ran == [7]
    state = durable.client.get_orchestration_state(iid)
    assert state is not None and state.output == 7
    completions = [e for e in durable.client.get_orchestration_history(iid)
                   if e.kind in h.COMPLETION_KINDS]
    assert len(completions) == 1
    durable.store.dispose()
