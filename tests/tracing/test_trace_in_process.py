"""One orchestration, one trace: the real OpenTelemetry SDK in this process, an embedded worker
(threads), SQLite and the filesystem broker. The state cache is dropped between steps so that
later episodes replay the whole history: the spans must not repeat."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

import span_files  # noqa: E402
import trace_checks  # noqa: E402
import traced_workflow  # noqa: E402
from celery import Celery  # noqa: E402
from celery.contrib.testing.worker import start_worker  # noqa: E402
from opentelemetry import trace  # noqa: E402

from celery_durable import Durable, OrchestrationStatus  # noqa: E402


@contextlib.contextmanager
def _worker(tmp: Path) -> Iterator[Durable]:
    folder = tmp / "broker"
    (folder / "control").mkdir(parents=True)
    app = Celery("traced", broker="filesystem://", set_as_current=False)
    app.conf.update(broker_transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder),
        "control_folder": str(folder / "control"), "polling_interval": 0.01},
        task_default_queue="traced", result_backend=None, task_ignore_result=True,
        durable_sweeper_enabled=False)
    durable = Durable(app, store_url=f"sqlite:///{tmp / 'store.sqlite3'}")
    traced_workflow.register(durable)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", queues=["traced"]):
        yield durable
    durable.store.dispose()


def _wait(what: str, check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_one_orchestration_is_one_trace_without_duplicates_after_replays(
        tmp_path: Path, spans_path: Path) -> None:
    with _worker(tmp_path) as durable:
        client = durable.client
        with trace.get_tracer("web").start_as_current_span("POST /orders",
                                                           kind=trace.SpanKind.SERVER):
            iid = client.schedule_new_orchestration("ship_order", input=["b", "aa", "ccc"])
        # the parent has taken the child's result and waits for the event (its state is
        # cached before that episode's commit is visible)
        _wait("the parent takes the sub-orchestration's result", lambda: any(
            e.kind == "SubOrchestrationCompleted" for e in durable.store.get_history(iid)))
        durable.runner.cache.discard(iid)  # the next episode replays all history
        misses = durable.runner.cache.misses
        client.raise_orchestration_event(iid, "approved", data=True)
        state = client.wait_for_orchestration_completion(iid, timeout=20)
        assert state.runtime_status is OrchestrationStatus.COMPLETED
        assert durable.runner.cache.misses > misses  # it did replay
    spans = span_files.read_spans(spans_path.parent)
    by_name = trace_checks.check_one_trace(spans, "POST /orders", iid)
    last = max(by_name["orchestration:ship_order"], key=lambda s: s["start"])
    assert last["attributes"]["durabletask.task.status"] == "COMPLETED"


def _spans(path: Path) -> list[dict[str, Any]]:
    return span_files.read_spans(path.parent)


def test_continue_as_new_stays_in_the_trace(spans_path: Path) -> None:
    from celery_durable.testing import DurableTestEnv

    with DurableTestEnv() as env:

        @env.durable.orchestrator(name="countdown")
        def countdown(ctx: Any, n: int) -> Any:
            if n == 0:
                return "done"
            yield ctx.create_timer(ctx.current_utc_datetime)
            ctx.continue_as_new(n - 1)

        with trace.get_tracer("web").start_as_current_span("POST /countdown"):
            iid = env.schedule_new_orchestration("countdown", input=2)
        assert env.wait_for_orchestration_completion(iid).output == "done"
    spans = _spans(spans_path)
    (create,) = [s for s in spans if s["name"] == "create_orchestration:countdown"]
    episodes = [s for s in spans if s["name"] == "orchestration:countdown"]
    executions = {s["attributes"]["celery_durable.execution_id"] for s in episodes}
    assert len(executions) == 3, executions
    assert all(s["parent_id"] == create["span_id"] for s in episodes)
    assert {s["trace_id"] for s in spans} == {create["trace_id"]}


def test_an_instance_started_untraced_makes_no_spans(spans_path: Path) -> None:
    from celery_durable.testing import DurableTestEnv

    with DurableTestEnv() as env:

        @env.durable.activity(name="echo")
        def echo(ctx: Any, x: Any) -> Any:
            return x

        @env.durable.orchestrator(name="echo_twice")
        def echo_twice(ctx: Any, x: Any) -> Any:
            yield ctx.call_activity("echo", input=x)
            return (yield ctx.call_activity("echo", input=x))

        span_files.SAMPLER.enabled = False  # the client does not record: nothing is kept
        iid = env.schedule_new_orchestration("echo_twice", input=1)
        span_files.SAMPLER.enabled = True  # the worker would record, but has no parent
        assert env.wait_for_orchestration_completion(iid).output == 1
        assert "trace" not in env.store.get_history(iid)[0].data
    assert _spans(spans_path) == []


def test_a_message_rebuilt_from_history_still_joins_the_trace(tmp_path: Path,
                                                              spans_path: Path) -> None:
    """``recover`` and the sweeper's re-dispatch rebuild an activity's message from history,
    without the episode's ``traceparent``: the run's span finds the trace the start kept."""
    from celery_durable.engine.actions import ScheduleActivity
    from celery_durable.runtime import messages

    with _worker(tmp_path) as durable:

        @durable.activity(name="late_step", queue="later")  # no worker consumes "later"
        def late_step(ctx: Any, x: int) -> int:
            return x + 1

        @durable.orchestrator(name="one_late_step")
        def one_late_step(ctx: Any, x: int) -> Any:
            return (yield ctx.call_activity("late_step", input=x))

        client = durable.client
        with trace.get_tracer("web").start_as_current_span("POST /late"):
            iid = client.schedule_new_orchestration("one_late_step", input=1)
        _wait("the activity is scheduled", lambda: any(
            e.kind == "TaskScheduled" for e in durable.store.get_history(iid)))
        with durable.app.connection_for_write() as conn:  # the sent message is lost
            conn.default_channel.queue_purge("later")
        scheduled = next(e for e in durable.store.get_history(iid) if e.kind == "TaskScheduled")
        record = durable.store.get_instance(iid)
        assert record is not None
        rebuilt = messages.activity_message(iid, record.execution_id, ScheduleActivity(
            scheduled.task_id, "late_step", 1, 1), "later", "one_late_step")
        assert "traceparent" not in rebuilt["options"]["headers"]
        durable.app.tasks["late_step"].apply(args=[1], task_id=rebuilt["options"]["task_id"],
                                             headers=rebuilt["options"]["headers"])
        assert client.wait_for_orchestration_completion(iid, timeout=20).output == 2
    spans = _spans(spans_path)
    (create,) = [s for s in spans if s["name"] == "create_orchestration:one_late_step"]
    (run,) = [s for s in spans if s["name"] == "activity:late_step"]
    assert run["trace_id"] == create["trace_id"] and run["parent_id"] == create["span_id"]
