"""Bad input and security: each bad request gets a specific DurableError naming what was wrong
and what to do, and changes nothing in the store; bad messages and bad orchestrator results on
a real worker are logged, the worker keeps running, and store URL passwords never show.

The client cases run on SQLite and PostgreSQL (a full dump of every store table is compared
before and after each case); the worker cases on ``celery worker`` subprocesses with PostgreSQL
and Redis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_workflows as ew
import pytest
from celery import Celery
from celery.app.utils import bugreport
from celery.bin.base import CLIContext
from click.testing import CliRunner
from edge_cluster import EdgeCluster, dump, edge_cluster
from kombu import Exchange, Queue
from services import database
from workers import wait_until

from celery_durable import (
    Durable,
    DurableClient,
    DurableError,
    InvalidInstanceIdError,
    InvalidNameError,
    OrchestrationAlreadyExistsError,
    OrchestrationEndedError,
    OrchestrationNotFoundError,
    OrchestrationStateError,
    OrchestrationStatus,
    PayloadError,
    PayloadTooLargeError,
)
from celery_durable.cli import durable as durable_cli
from celery_durable.runtime import messages

LIMIT = 10_000  # durable_max_payload_bytes of these tests
COMPLETED, FAILED = OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED


@dataclass
class Ids:
    live: str  # PENDING: scheduled, never run
    ended: str  # COMPLETED


@dataclass(frozen=True)
class Case:
    """A bad request: ``call(client, ids)`` must raise ``error`` whose message holds each of
    ``says`` (what was wrong, and what to do)."""

    name: str
    call: Callable[[DurableClient, Ids], Any]
    error: type[DurableError]
    says: tuple[str, ...]


def schedule(orchestrator: Any = ew.wait_event, **kwargs: Any) -> Callable[..., Any]:
    return lambda client, ids: client.schedule_new_orchestration(orchestrator, **kwargs)


class Cycle(list[Any]):
    pass


cyclic = Cycle()
cyclic.append(cyclic)
BAD_IDS = {"empty": "", "too long": "x" * 257, "space": "order 42", "tab": "order\t42",
           "trailing newline": "order-42\n", "NUL": "order\x0042", "DEL": "order\x7f",
           "C1 control": "order\x9f42", "lone surrogate": "order\ud800", "not a string": 42}
STEERING = {
    "raise an event": lambda c, i: c.raise_orchestration_event(i, "e", data=1),
    "suspend": lambda c, i: c.suspend_orchestration(i),
    "resume": lambda c, i: c.resume_orchestration(i),
    "terminate": lambda c, i: c.terminate_orchestration(i),
}
ID_ADVICE = ("instance id must be a string of 1 to 256 characters", "without spaces or control")

CASES = [
    Case("input: a set", schedule(input={"ids": {1, 2}}), PayloadError,
         ("input of orchestration 'edge.wait_event' is not JSON-serialisable", "$.ids",
          "a set", "pass JSON values")),
    Case("input: bytes", schedule(input=[b"raw"]), PayloadError, ("$[0]", "bytes")),
    Case("input: a cycle", schedule(input=cyclic), PayloadError,
         ("contains itself", "pass values without cycles")),
    Case("input: NaN", schedule(input=float("nan")), PayloadError, ("nan", "finite number")),
    Case("input: over the limit", schedule(input="x" * LIMIT), PayloadTooLargeError,
         ("input of orchestration 'edge.wait_event' is 10,002 bytes of JSON",
          "more than the 10,000 allowed (durable_max_payload_bytes)",
          "store large data elsewhere and pass a reference")),
    Case("event data: an object",
         lambda c, i: c.raise_orchestration_event(i.live, "e", data=object()), PayloadError,
         ("data of event 'e' is not JSON-serialisable", "an object")),
    Case("event data: over the limit",
         lambda c, i: c.raise_orchestration_event(i.live, "e", data=["y" * LIMIT]),
         PayloadTooLargeError, ("data of event 'e' is 10,004 bytes", "durable_max_payload_bytes")),
    Case("termination output: over the limit",
         lambda c, i: c.terminate_orchestration(i.live, output="z" * LIMIT),
         PayloadTooLargeError, ("termination output is 10,002 bytes",)),
    *[Case(f"orchestrator name: {label}", schedule(bad), InvalidNameError,
           ("orchestrator name must be a string of 1 to 256 characters",))
      for label, bad in {"empty": "", "too long": "o" * 257, "NUL": "edge\x00x",
                         "trailing space": "edge.wait_event "}.items()],
    *[Case(f"instance id: {label}", schedule(instance_id=bad), InvalidInstanceIdError,
           ID_ADVICE) for label, bad in BAD_IDS.items()],
    *[Case(f"{verb}: invalid instance id", lambda c, i, act=act: act(c, "bad\x00id"),
           InvalidInstanceIdError, ID_ADVICE) for verb, act in STEERING.items()],
    Case("get state: invalid instance id", lambda c, i: c.get_orchestration_state("a b"),
         InvalidInstanceIdError, ID_ADVICE),
    *[Case(f"event name: {label}", lambda c, i, bad=bad: c.raise_orchestration_event(i.live, bad),
           InvalidNameError, ("event name must be a string of 1 to 256 characters",
                              "without control characters"))
      for label, bad in {"empty": "", "too long": "e" * 257, "NUL": "e\x00",
                         "newline": "approval\n", "not a string": None}.items()],
    Case("id of a live instance", lambda c, i: c.schedule_new_orchestration(
        ew.wait_event, instance_id=i.live), OrchestrationAlreadyExistsError,
        ("is already running", "choose another id, or wait until it has ended")),
    *[Case(f"{verb}: unknown instance", lambda c, i, act=act: act(c, "no-such-instance"),
           OrchestrationNotFoundError, ("no orchestration instance has id 'no-such-instance'",
                                        "check the id"))
      for verb, act in STEERING.items()],
    *[Case(f"{verb}: ended instance", lambda c, i, act=act: act(c, i.ended),
           OrchestrationEndedError, ("it has already ended (COMPLETED)",))
      for verb, act in STEERING.items()],
    Case("purge: live instance", lambda c, i: c.purge_orchestration(i.live),
         OrchestrationStateError, ("terminate",)),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Durable, Ids]]:
    """A Durable (no worker) with one live and one ended instance."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'store.sqlite3'}"
        else:
            url = stack.enter_context(database("postgresql", "durable_badin"))
        app = Celery("bad-input", broker="memory://", set_as_current=False)
        app.conf.durable_max_payload_bytes = LIMIT
        durable = Durable(app, store_url=url)
        stack.callback(durable.store.dispose)
        client = durable.client
        ids = Ids(live=client.schedule_new_orchestration(ew.wait_event, input="e"),
                  ended=client.schedule_new_orchestration(ew.immediate, input="done"))
        durable.runner.run(ids.ended)
        assert client.get_orchestration_state(ids.ended).runtime_status is COMPLETED
        yield durable, ids


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_request_is_refused_and_changes_nothing(setup: tuple[Durable, Ids],
                                                    case: Case) -> None:
    durable, ids = setup
    before = dump(durable.store)
    with pytest.raises(case.error) as raised:
        case.call(durable.client, ids)
    assert type(raised.value) is case.error, f"{type(raised.value).__name__}: {raised.value}"
    for fragment in case.says:
        assert fragment in str(raised.value), str(raised.value)
    assert dump(durable.store) == before


def test_a_payload_at_the_limit_is_accepted(setup: tuple[Durable, Ids]) -> None:
    durable, ids = setup
    data = "x" * (LIMIT - 2)  # its JSON has two quotes
    durable.client.raise_orchestration_event(ids.live, "e", data=data)


@pytest.mark.parametrize("value", [0, -1, "big", 1.5, True])
def test_max_payload_bytes_must_be_a_positive_int(value: Any) -> None:
    app = Celery("bad-setting", broker="memory://", set_as_current=False)
    app.conf.durable_max_payload_bytes = value
    with pytest.raises(ValueError, match="durable_max_payload_bytes must be a positive int"):
        Durable(app, store_url="sqlite://").settings  # noqa: B018  (read when first needed)
    configured = Celery("bad-setting-configured", broker="memory://", set_as_current=False)
    configured.config_from_object({"durable_max_payload_bytes": value}, force=True)
    with pytest.raises(ValueError, match="durable_max_payload_bytes must be a positive int"):
        Durable(configured, store_url="sqlite://")  # an app configured already: at once


def test_default_max_payload_bytes_is_4_mib() -> None:
    app = Celery("default-setting", broker="memory://", set_as_current=False)
    assert Durable(app, store_url="sqlite://").settings.max_payload_bytes == 4 * 1024 * 1024


# -- on a real worker ------------------------------------------------------------------------------

PASSWORD = "s3cr3t-Pa55word"  # in the store URL; the local PostgreSQL trusts and ignores it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    """One prefork worker on PostgreSQL + Redis whose app accepts pickle (it must not matter)."""
    conf = {"durable_max_payload_bytes": LIMIT, "accept_content": ["json", "pickle"]}
    # Celery refuses to run a worker as root that accepts pickle, unless forced
    with edge_cluster(tmp_path_factory.mktemp("bad-input-worker"), conf=conf,
                      password=PASSWORD, env={"C_FORCE_ROOT": "1"}) as c:
        yield c


RESULTS = [  # orchestrator, input, status, error type, fragments of the failure message
    (ew.returns_object, None, FAILED, "PayloadError",
     ["output of orchestrator 'edge.returns_object' is not JSON-serialisable", "$.when",
      "a datetime"]),
    (ew.raises_unprintable, None, FAILED, "Unprintable",
     ["<str() of the Unprintable raised RuntimeError>"]),
    (ew.bad_custom_status, None, FAILED, "PayloadError",
     ["custom status is not JSON-serialisable", "$.ids", "a set"]),
    (ew.big_output, LIMIT, FAILED, "PayloadTooLargeError",
     ["output of orchestrator 'edge.big_output' is 10,002 bytes of JSON",
      "durable_max_payload_bytes"]),
    (ew.bad_child_id, None, FAILED, "InvalidInstanceIdError",
     ["instance id must be a string", "'child\\x00id'"]),
    (ew.big_activity_result, LIMIT, COMPLETED, "PayloadTooLargeError",
     ["result of activity 'edge.big' is 10,002 bytes of JSON", "durable_max_payload_bytes"]),
    (ew.unknown_activity, None, COMPLETED, "UnknownNameError", ["edge.no_such_activity"]),
    # scheduled by name (the client needs no code); the worker, which does not know it, fails it
    ("edge.no_such_orchestrator", None, FAILED, "UnknownNameError",
     ["no orchestrator is registered as 'edge.no_such_orchestrator'", "edge.wait_event"]),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("orchestrator", "value", "status", "error_type", "says"), RESULTS,
                         ids=[getattr(r[0], "__name__", r[0]) for r in RESULTS])
def test_what_an_orchestration_cannot_store_fails_it_clearly(
        cluster: EdgeCluster, orchestrator: Any, value: Any, status: OrchestrationStatus,
        error_type: str, says: list[str]) -> None:
    """FAILED orchestrations carry the failure; COMPLETED ones caught it as a TaskFailedError
    (an activity's result too large, an activity nobody registered) and return its details."""
    with cluster.logs_on_failure():
        state = cluster.wait(cluster.client.schedule_new_orchestration(orchestrator,
                                                                        input=value))
        assert state.runtime_status is status, state
        if status is FAILED:
            details = state.failure_details
            assert details is not None
            found = {"error_type": details.error_type, "message": details.message}
        else:
            found = state.output
        assert found["error_type"] == error_type, found
        for fragment in says:
            assert fragment in found["message"], found
        for worker in cluster.workers:
            worker.check_alive()


class Planted:
    """Unpickling this makes the folder ``path``: proof that a pickle was decoded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@pytest.mark.e2e
def test_malformed_foreign_and_pickled_messages_are_dropped(cluster: EdgeCluster,
                                                            tmp_path: Path) -> None:
    """Each message is logged and dropped; the store is unchanged, no pickle is decoded, and the
    worker keeps running the instance that was waiting meanwhile."""
    app, queue = cluster.app, cluster.queue
    client = cluster.client
    live = client.schedule_new_orchestration(ew.wait_event, input="go")
    client.wait_for_orchestration_start(live, timeout=30)
    before = dump(cluster.durable.store)
    planted = [tmp_path / "episode-pickle", tmp_path / "activity-pickle"]
    header = {messages.DURABLE_HEADER: [live, "0" * 32, 1, 1, "edge.wait_event"]}
    episode, timer = messages.EPISODE_TASK, messages.TIMER_TASK
    expected_log = {  # what the worker's log must show for each message
        "invalid id": "a celery_durable.episode message is for an invalid instance id",
        "bad count": "a celery_durable.episode message counts 'many' rejections",
        "no args": "missing 1 required positional argument: 'instance_id'",
        "bad timer": "a celery_durable.timer message fires at 'noon', not an ISO datetime",
        "bad header": "a edge.echo message is for an invalid instance id",
        "short header": "a edge.echo message has the durable header ['x'], not 5 values",
        "unknown id": "orchestration no-such-instance no longer exists",
        "foreign task": "Received unregistered task of type 'edge.evil'",
        "no task header": "Received and deleted unknown message",
        "not JSON": "Can't decode message body",
        "pickled episode": "celery_durable refused a 'application/x-python-serialize' message "
                           "for task 'celery_durable.episode'",
        "pickled activity": "celery_durable refused a 'application/x-python-serialize' message "
                            "for task 'edge.echo'",
    }
    app.send_task(episode, args=[123, "edge.wait_event"])
    app.send_task(episode, args=[live, "edge.wait_event"], kwargs={"rejections": "many"})
    app.send_task(episode, args=[])
    app.send_task(timer, args=[live, "0" * 32, 1, "noon"])
    app.send_task(episode, args=["no-such-instance", "edge.wait_event"])
    bad_header = {messages.DURABLE_HEADER: [123, "0" * 32, 1, 1, "edge.wait_event"]}
    app.send_task("edge.echo", args=[1], headers=bad_header)
    app.send_task("edge.echo", args=[1], headers={messages.DURABLE_HEADER: ["x"]})
    app.send_task("edge.evil", args=[live])
    exchange = Exchange(queue, type="direct")
    with app.producer_or_acquire() as producer:
        producer.publish({"hello": "world"}, exchange=exchange, routing_key=queue,
                         declare=[Queue(queue, exchange, routing_key=queue)])
        producer.publish(b"\xff\xfe{", exchange=exchange, routing_key=queue,
                         content_type="application/json", content_encoding="utf-8",
                         headers={"task": episode, "id": uuid.uuid4().hex, "lang": "py"})
    app.send_task(episode, args=[Planted(planted[0]), "edge.wait_event"], serializer="pickle")
    app.send_task("edge.echo", args=[Planted(planted[1])], serializer="pickle", headers=header)
    with cluster.logs_on_failure():
        missing = lambda: [k for k, text in expected_log.items()  # noqa: E731
                           if text not in cluster.logs()]
        wait_until(lambda: f"log lines for {missing()}", lambda: not missing(),
                   time.monotonic() + 30, cluster.workers, interval=0.2)
        assert not any(path.exists() for path in planted), "a pickled message was decoded"
        assert dump(cluster.durable.store) == before
        client.raise_orchestration_event(live, "go", data=7)
        state = cluster.wait(live)
        assert state.runtime_status is COMPLETED and state.output == 7, state


# -- store URLs with passwords -------------------------------------------------------------------

def cli(app: Celery, *args: str) -> Any:
    """``celery -A <app> durable *args`` in this process (stdout and stderr apart)."""
    obj = CLIContext(app=app, no_color=True, workdir=None)
    return CliRunner().invoke(durable_cli, list(args), obj=obj, catch_exceptions=True)


@pytest.mark.e2e
def test_store_password_never_shows(cluster: EdgeCluster,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """Not in the worker's log (after the cases above), the CLI's output and errors, the
    errors of an unreachable or unreadable store URL, nor this process's log records."""
    assert PASSWORD in cluster.durable.store.url  # the worker and client use it
    shown: list[str] = [cluster.logs(), repr(cluster.durable.store)]
    live = cluster.client.schedule_new_orchestration(ew.wait_event, input="never")
    for args in (["list"], ["--json", "list"], ["show", live], ["show", "no-such-id"],
                 ["history", "no-such-id"], ["raise", "no-such-id", "e"]):
        result = cli(cluster.app, *args)
        shown += [result.stdout, result.stderr]
    with caplog.at_level(logging.DEBUG):
        unreachable = Celery("unreachable", broker="memory://", set_as_current=False)
        store_url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/nowhere"
        found = Durable(unreachable, store_url=store_url)
        with pytest.raises(Exception) as raised:
            found.client.get_orchestration_state("some-id")
        shown += [str(raised.value), repr(raised.value), repr(found.store)]
        result = cli(unreachable, "list")
        assert result.exit_code == 1 and "the store failed" in result.stderr, result.stderr
        shown += [result.stdout, result.stderr]
        for url in (f"nosuchdb://user:{PASSWORD}@host/db",
                    f"postgresql+psycopg://user:{PASSWORD}@host:port/db"):
            with pytest.raises(ValueError) as bad:
                Durable(Celery("bad-url", set_as_current=False), store_url=url)
            assert "user:***@host" in str(bad.value), bad.value
            shown.append(str(bad.value))
    shown += [record.getMessage() for record in caplog.records]
    leaks = [text for text in shown if PASSWORD in text]
    assert not leaks, leaks


def test_celery_report_masks_the_store_url() -> None:
    """``celery report`` (what users paste into bug reports) masks ``durable_store_url`` as
    Celery masks the broker URL."""
    app = Celery("reported", broker=f"redis://:{PASSWORD}@127.0.0.1:6379/0",
                 set_as_current=False)
    app.conf.durable_store_url = f"postgresql+psycopg://shop:{PASSWORD}@db.internal/shop"
    Durable(app)
    report = bugreport(app)
    assert "durable_store_url: '********'" in report, report
    assert PASSWORD not in report, report
