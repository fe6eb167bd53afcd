"""The message of a ctx.call_task, its link / link_error callbacks, and its re-dispatch."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.utils.functional import arity_greater
from kombu.exceptions import EncodeError

from celery_durable import Durable
from celery_durable.engine.actions import ScheduleTask
from celery_durable.runtime import inbound, messages, plain_tasks
from celery_durable.runtime.redispatch import redispatch_message
from celery_durable.store.overdue import OverdueTask

CALL = ScheduleTask(3, "other.team.task", [1, {"a": 2}], {"k": "v"},
                    {"queue": "theirs", "priority": 4}, 2)


@pytest.fixture
def durable(tmp_path: Path) -> Durable:
    app = Celery("plain-tasks-test", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = f"plain-tasks-{uuid.uuid4().hex[:8]}"
    found = Durable(app, store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    found.store.create_schema()
    return found


def test_the_message_is_the_tasks_own_with_json_callbacks_to_the_episode_queue() -> None:
    message = messages.plain_task_message("i-1", "e" * 32, CALL, "orch", "episodes")
    options = message["options"]
    header = ["i-1", "e" * 32, 3, 2, "orch"]
    assert (message["task"], message["args"], message["kwargs"]) == \
        ("other.team.task", [1, {"a": 2}], {"k": "v"})
    assert options["task_id"] == messages.activity_task_id("i-1", "e" * 32, 3, 2)
    assert options["headers"] == {messages.DURABLE_HEADER: header}
    assert (options["queue"], options["priority"]) == ("theirs", 4)
    for key, task in (("link", messages.TASK_SUCCEEDED), ("link_error", messages.TASK_FAILED)):
        [callback] = options[key]
        assert callback["task"] == task
        assert callback["kwargs"] == {"call": header, "name": "other.team.task"}
        assert callback["options"] == {"queue": "episodes", "serializer": "json"}


def test_the_errback_takes_request_exc_traceback_when_celery_calls_it_inline(
        durable: Durable) -> None:
    """Celery calls an errback inline with (request, exc, traceback) only when it is not bound
    and its header, with the stored kwargs applied, takes more than one argument."""
    errback = durable.app.signature(messages.TASK_FAILED, kwargs={"call": [], "name": "x"})
    assert arity_greater(partial(errback.type.__header__, **errback.kwargs), 1)


def test_the_sweeper_resends_the_same_message(durable: Durable) -> None:
    data = {"celery_task": True, "args": CALL.args, "kwargs": CALL.kwargs,
            "options": CALL.options, "attempt": 2}
    overdue = OverdueTask("i-1", "e" * 32, 3, "TaskScheduled", CALL.name, data, "orch",
                          None, 1)
    message = redispatch_message(durable, overdue)
    expected = messages.plain_task_message("i-1", "e" * 32, CALL, "orch",
                                           durable.episode_queue("orch"))
    assert message["options"]["headers"].pop(messages.REDISPATCH_HEADER) == 2
    assert message == expected


def test_failure_details() -> None:
    details = plain_tasks.exception_details("t", EncodeError("Object of type set is not JSON "
                                                             "serializable"), "Traceback ...")
    assert details.error_type == "EncodeError"
    assert details.message.startswith("Celery task 't' returned a value JSON cannot hold "
                                      "(Object of type set is not JSON serializable); return")
    assert details.stack_trace == "Traceback ..."


def test_without_a_result_backend_the_failure_says_where_the_exception_is(
        durable: Durable) -> None:
    details = plain_tasks.remote_failure(durable, "other.team.task", "cid-1")
    assert details.error_type == plain_tasks.REMOTE_FAILURE
    assert "Celery task 'other.team.task' failed on a worker that does not run " \
           "celery_durable" in details.message
    assert "(cid-1)" in details.message and "same result_backend" in details.message


def test_a_malformed_callback_is_dropped_without_touching_the_store(
        durable: Durable, caplog: pytest.LogCaptureFixture) -> None:
    result = durable.app.tasks[messages.TASK_SUCCEEDED].apply(
        args=[1], kwargs={"call": ["no-such-instance"], "name": "t"})
    assert result.successful()
    assert "has the durable header ['no-such-instance'], not 5 values" in caplog.text


def test_a_result_kombu_decodes_to_a_datetime_is_recorded_as_a_failure(
        durable: Durable) -> None:
    @durable.orchestrator(name="plain.one")
    def one(ctx: Any, _: Any) -> Any:
        return (yield ctx.call_task("other.team.task"))

    iid = durable.client.schedule_new_orchestration("plain.one")
    assert durable.runner.run(iid, wait=True)
    record = durable.store.get_instance(iid)
    assert record is not None
    header = [iid, record.execution_id, 0, 1, "plain.one"]
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    durable.app.tasks[messages.TASK_SUCCEEDED].apply(
        args=[when], kwargs={"call": header, "name": "other.team.task"})
    state = durable.client.get_orchestration_state(iid)
    assert state is not None and state.failure_details is not None
    assert "the result of Celery task 'other.team.task' is not JSON-serialisable: value at $ " \
           "is a datetime" in state.failure_details.message


def test_an_activity_called_by_name_with_call_task_fails_the_task(durable: Durable) -> None:
    @durable.activity(name="plain.act")
    def act(ctx: Any, value: Any) -> Any:
        return value

    @durable.orchestrator(name="plain.wrong")
    def wrong(ctx: Any, _: Any) -> Any:
        return (yield ctx.call_task("plain.act", args=[1]))

    iid = durable.client.schedule_new_orchestration("plain.wrong")
    assert durable.runner.run(iid, wait=True)
    assert durable.runner.run(iid, wait=True)  # the failure it left in the inbox
    state = durable.client.get_orchestration_state(iid)
    assert state is not None and state.failure_details is not None
    assert "TaskCallError: 'plain.act' is an activity, and call_task sends plain Celery " \
           "tasks" in state.failure_details.message


def test_the_callbacks_take_json_messages_only(durable: Durable) -> None:
    """A pickled callback message is refused before its body is decoded (see inbound.py)."""
    for name in (messages.TASK_SUCCEEDED, messages.TASK_FAILED):
        task = durable.app.tasks[name]
        assert task.Strategy == inbound.STRATEGY
        assert getattr(task, "durable_json_only_header", None) is None  # every message
        assert task.acks_late and task.ignore_result
