"""ctx.call_task end to end on PostgreSQL + Redis: orchestrations call the tasks of another
team's Celery app, whose worker (a real ``celery worker`` subprocess) cannot import
celery_durable at all.

The orchestration side is an app with a ``Durable`` and an embedded worker consuming its own
queue; ``task_routes`` sends ``foreign.*`` to the other worker's queue. The foreign app
serializes its tasks with pickle; results and final failures come back through the ``link`` /
``link_error`` callbacks (as JSON), failures' details through the result backend both apps
share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from services import REDIS_URL, database, require
from workers import WorkerProcess, delete_queue, logs_on_failure, subprocess_env, wait_until

from celery_durable import Durable, OrchestrationStatus, TaskFailedError
from celery_durable.engine.actions import scheduled_task_of
from celery_durable.runtime import messages
from celery_durable.runtime.messages import TASK_FAILED, TASK_SUCCEEDED

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
BROKER = f"{REDIS_URL}/13"
BACKEND = f"{REDIS_URL}/14"
COMPLETED = OrchestrationStatus.COMPLETED
READY_TIMEOUT = 60.0


def run_calls(ctx: Any, plan: list[list[Any]]) -> Any:
    """Call each ``[task name, args, kwargs, celery options]`` in turn; collect the results,
    or ``[error type, message]`` for a task that failed."""
    results = []
    for name, args, kwargs, options in plan:
        try:
            results.append((yield ctx.call_task(name, args=args, kwargs=kwargs, **options)))
        except TaskFailedError as exc:
            results.append([exc.details.error_type, exc.details.message])
    return results


def own_task(sku: str, fail: bool = False) -> str:
    """A task of the orchestrations' own app (its worker runs celery_durable)."""
    if fail:
        raise LookupError(f"no such sku {sku}")
    return sku.upper()


@dataclass
class Setup:
    app: Celery
    durable: Durable
    foreign: WorkerProcess
    foreign_queue: str
    queue: str
    logs: list[logging.LogRecord]

    def run(self, plan: list[list[Any]], timeout: float = 30) -> Any:
        client = self.durable.client
        iid = client.schedule_new_orchestration("calltask.run_calls", input=plan)
        deadline = time.monotonic() + timeout
        while True:
            self.foreign.check_alive()
            try:
                state = client.wait_for_orchestration_completion(iid, timeout=1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                continue
            assert state.runtime_status is COMPLETED, state.failure_details
            return state

    def completions(self, instance_id: str) -> list[Any]:
        return [e for e in self.durable.client.get_orchestration_history(instance_id)
                if e.kind in ("TaskCompleted", "TaskFailed")]


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require("redis")
    tmp = tmp_path_factory.mktemp("call-task")
    suffix = uuid.uuid4().hex[:8]
    queue, foreign_queue = f"calltask-{suffix}", f"calltask-foreign-{suffix}"
    # celery_durable cannot be imported by the foreign worker: this package shadows it
    poison = tmp / "poison" / "celery_durable"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text(
        'raise ImportError("celery_durable is not installed on this worker")\n')
    marker = tmp / "foreign-ready.json"
    env = subprocess_env({"FOREIGN_BROKER": BROKER, "FOREIGN_BACKEND": BACKEND,
                          "FOREIGN_QUEUE": foreign_queue, "FOREIGN_MARKER": str(marker),
                          # the foreign app accepts pickle, which Celery refuses to run as root
                          "C_FORCE_ROOT": "1"},
                         [tmp / "poison", E2E_DIR])
    records: list[logging.LogRecord] = []
    handler = _Records(records)
    loggers = [logging.getLogger(f"celery_durable.runtime.{name}")
               for name in ("episode", "redispatch")]
    with contextlib.ExitStack() as stack:
        store_url = stack.enter_context(database("postgresql", "durable_calltask"))
        app = Celery("calltask", broker=BROKER, backend=BACKEND, set_as_current=False)
        app.conf.update(
            task_default_queue=queue, task_routes={"foreign.*": {"queue": foreign_queue}},
            task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
            broker_connection_retry_on_startup=True, durable_sweep_interval=0.5,
            durable_recovery_grace=2.0, durable_activity_redispatch_after=2.0)
        durable = Durable(app, store_url=store_url)
        durable.orchestrator(name="calltask.run_calls")(run_calls)
        app.task(name="calltask.own")(own_task)
        stack.callback(durable.store.dispose)
        stack.callback(delete_queue, BROKER, queue)
        stack.callback(delete_queue, BROKER, foreign_queue)
        foreign = WorkerProcess("foreign_app:app", f"foreign-{suffix}@e2e", env=env, cwd=tmp,
                                log_path=tmp / "foreign.log", concurrency=2)
        stack.callback(foreign.stop)
        with logs_on_failure([foreign]):
            wait_until("the foreign worker ready", marker.exists,
                       time.monotonic() + READY_TIMEOUT, [foreign])
        stack.enter_context(start_worker(app, pool="threads", concurrency=4,
                                         perform_ping_check=False, loglevel="WARNING",
                                         shutdown_timeout=30, queues=[queue]))
        for logger in loggers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            stack.callback(logger.removeHandler, handler)
        yield Setup(app, durable, foreign, foreign_queue, queue, records)


def test_the_foreign_worker_has_no_celery_durable(setup: Setup) -> None:
    ready = json.loads((Path(setup.foreign.log_path).parent / "foreign-ready.json").read_text())
    assert ready == {"celery_durable_modules": []}


def test_success_with_args_and_kwargs_routed_by_task_routes(setup: Setup) -> None:
    with logs_on_failure([setup.foreign]):
        state = setup.run([["foreign.add", [2, 3], {"times": 10}, {}],
                           ["foreign.add", [1, 1], {}, {"priority": 3}]])
        assert state.output == [50, 2]
        history = setup.durable.client.get_orchestration_history(state.instance_id)
        scheduled = [e for e in history if e.kind == "TaskScheduled"]
        assert [e.name for e in scheduled] == ["foreign.add", "foreign.add"]
        assert scheduled[0].data["args"] == [2, 3]
        assert scheduled[0].data["kwargs"] == {"times": 10}
        assert [e.data for e in setup.completions(state.instance_id)] == [50, 2]
        # the foreign worker (which consumes only its own queue) ran them, with our task ids
        log = setup.foreign.log()
        for task_id in (0, 1):
            celery_id = messages.activity_task_id(state.instance_id, _execution(setup, state),
                                                  task_id, 1)
            assert f"foreign.add[{celery_id}] succeeded" in log


def test_celery_retries_then_success_is_recorded_once(setup: Setup) -> None:
    with logs_on_failure([setup.foreign]):
        state = setup.run([["foreign.flaky", [2], {}, {}]])
        assert state.output == [{"runs": 3}]
        assert [e.kind for e in setup.completions(state.instance_id)] == ["TaskCompleted"]
        celery_id = messages.activity_task_id(state.instance_id, _execution(setup, state), 0, 1)
        assert setup.foreign.log().count(f"foreign.flaky[{celery_id}] retry") == 2


def test_final_failure_after_retries_has_the_remote_type_and_message(setup: Setup) -> None:
    with logs_on_failure([setup.foreign]):
        state = setup.run([["foreign.charge", ["4242"], {}, {}]])
        assert state.output == [["CardDeclined", "card 4242 declined (run 3)"]]
        [failure] = setup.completions(state.instance_id)
        assert failure.kind == "TaskFailed"
        assert "CardDeclined" in (failure.data["stack_trace"] or "")
        celery_id = messages.activity_task_id(state.instance_id, _execution(setup, state), 0, 1)
        assert setup.foreign.log().count(f"foreign.charge[{celery_id}] retry") == 2


def test_results_json_cannot_hold_fail_the_task_clearly(setup: Setup) -> None:
    with logs_on_failure([setup.foreign]):
        state = setup.run([["foreign.stamp", [], {}, {}], ["foreign.tags", [], {}, {}]])
        [[stamp_type, stamp], [tags_type, tags]] = state.output
        assert stamp_type == "PayloadError"
        assert stamp.startswith("the result of Celery task 'foreign.stamp' is not "
                                "JSON-serialisable: value at $ is a datetime")
        assert "value.isoformat() instead of a datetime" in stamp
        assert tags_type == "EncodeError"
        assert tags.startswith("Celery task 'foreign.tags' returned a value JSON cannot hold")
        assert "a list instead of a set" in tags


def test_a_task_of_a_worker_that_runs_celery_durable(setup: Setup) -> None:
    """There Celery calls the errback inline with the exception: its type, message and traceback
    are recorded without the result backend (which holds nothing: task_ignore_result)."""
    state = setup.run([["calltask.own", ["ab"], {}, {}],
                       ["calltask.own", ["zz"], {"fail": True}, {}]])
    assert state.output == ["AB", ["LookupError", "no such sku zz"]]
    failure = setup.completions(state.instance_id)[1]
    assert failure.kind == "TaskFailed"
    assert 'raise LookupError(f"no such sku {sku}")' in failure.data["stack_trace"]
    celery_id = messages.activity_task_id(state.instance_id, _execution(setup, state), 1, 1)
    assert setup.app.backend.get_task_meta(celery_id)["status"] == "PENDING"


def test_a_duplicate_completion_is_recorded_once(setup: Setup) -> None:
    with logs_on_failure([setup.foreign]):
        state = setup.run([["foreign.add", [20, 1], {}, {}]])
        iid, execution = state.instance_id, _execution(setup, state)
        header = [iid, execution, 0, 1, "calltask.run_calls"]
        callback_args = {"call": header, "name": "foreign.add"}
        # the link callbacks delivered again, in this process, with other outcomes
        setup.app.tasks[TASK_SUCCEEDED].apply(args=[999], kwargs=callback_args)
        setup.app.tasks[TASK_FAILED].apply(args=["some-celery-id"], kwargs=callback_args)
        # and the whole task sent again (a redelivery): the foreign worker runs it twice,
        # its second link callback reaches our worker and is dropped as a duplicate
        history = setup.durable.client.get_orchestration_history(iid)
        scheduled = next(e for e in history if e.kind == "TaskScheduled")
        call = scheduled_task_of(0, scheduled.name, scheduled.data)
        assert call is not None
        messages.publish(setup.app, [messages.plain_task_message(
            iid, execution, call, "calltask.run_calls", setup.queue)])
        wait_until("the re-sent task's callback dropped as a duplicate",
                   lambda: _duplicates(setup, iid) >= 3, time.monotonic() + 30, [setup.foreign])
        assert [e.data for e in setup.completions(iid)] == [21]
        final = setup.durable.client.get_orchestration_state(iid)
        assert final is not None and final.output == [21]


def test_a_lost_message_is_redispatched_by_the_sweeper(setup: Setup) -> None:
    """The task goes to a queue (``queue=``) nobody consumes; its message is purged there, then
    the foreign worker starts consuming that queue: the sweeper sends it again, same task id,
    same callbacks."""
    lost_queue = f"{setup.foreign_queue}-lost"
    with logs_on_failure([setup.foreign]):
        client = setup.durable.client
        iid = client.schedule_new_orchestration(
            "calltask.run_calls", input=[["foreign.add", [4, 4], {}, {"queue": lost_queue}]])

        def purged() -> bool:  # the message reached the queue and was thrown away
            with setup.app.connection_for_write() as conn:
                return bool(conn.default_channel.queue_purge(lost_queue))

        try:
            wait_until("the message in the unconsumed queue", purged, time.monotonic() + 30,
                       retry_on=(Exception,))
            setup.app.control.add_consumer(lost_queue, destination=[setup.foreign.node])
            wait_until("the foreign worker consuming the queue",
                       lambda: f"Started consuming from {lost_queue}" in setup.foreign.log(),
                       time.monotonic() + 30, [setup.foreign])
            state = client.wait_for_orchestration_completion(iid, timeout=30)
        finally:
            delete_queue(BROKER, lost_queue)
        assert state.runtime_status is COMPLETED and state.output == [8]
        assert [e.data for e in setup.completions(iid)] == [8]
        celery_id = messages.activity_task_id(iid, _execution(setup, state), 0, 1)
        assert any(r.getMessage().startswith(f"re-dispatched Celery task 'foreign.add' of "
                                             f"instance {iid} (task 0, Celery id {celery_id})")
                   for r in setup.logs)


def _execution(setup: Setup, state: Any) -> str:
    record = setup.durable.store.get_instance(state.instance_id)
    assert record is not None
    return record.execution_id


def _duplicates(setup: Setup, instance_id: str) -> int:
    """Completions of task 0 of the instance that episodes dropped (it had one already)."""
    return sum(1 for r in list(setup.logs)
               if instance_id in r.getMessage() and ("duplicate: task 0" in r.getMessage()
                                                     or "dropped Task" in r.getMessage()))
