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
import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import edge_workflows as ew
import pytest
from celery import Celery
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
    UnknownNameError,
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
    Case("unknown orchestrator", schedule("edge.no_such_orchestrator"), UnknownNameError,
         ("edge.no_such_orchestrator",)),
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
        Durable(app, store_url="sqlite://")


def test_default_max_payload_bytes_is_4_mib() -> None:
    app = Celery("default-setting", broker="memory://", set_as_current=False)
    assert Durable(app, store_url="sqlite://").settings.max_payload_bytes == 4 * 1024 * 1024
