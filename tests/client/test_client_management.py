"""DurableClient's management calls on a real store: queries with filters and paging, waits that
time out, and management calls on unknown or finished instances. No worker runs here: instances
stay where the client leaves them (PENDING), which is what these calls must report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from celery import Celery
from services import database

from celery_durable import (
    Durable,
    DurableClient,
    OrchestrationNotFoundError,
    OrchestrationStatus,
    orchestrator,
)


@orchestrator(name="client.alpha")
def alpha(ctx, value):
    return value


@orchestrator(name="client.beta")
def beta(ctx, value):
    return value


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DurableClient]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
        else:
            url = stack.enter_context(database("postgresql", "durable_client"))
        folder = tmp_path / "broker"
        app = Celery("client-tests", broker="filesystem://", set_as_current=False)
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder), "data_folder_out": str(folder),
            "control_folder": str(folder / "control")}
        durable = Durable(app, store_url=url)
        stack.callback(durable.store.dispose)
        yield durable.client


def test_query_filters_and_pages_through_every_instance(client: DurableClient) -> None:
    ids = [client.schedule_new_orchestration(alpha, input=i, instance_id=f"a-{i:02d}")
           for i in range(7)]
    ids += [client.schedule_new_orchestration(beta, input=i, instance_id=f"b-{i:02d}")
            for i in range(3)]
    seen: list[str] = []
    page = client.query_orchestrations(name="client.alpha", limit=3)
    pages = 1
    while True:
        assert len(page.items) <= 3
        seen += [state.instance_id for state in page.items]
        if page.continuation_token is None:
            break
        page = client.query_orchestrations(name="client.alpha", limit=3,
                                           continuation_token=page.continuation_token)
        pages += 1
    assert seen == ids[:7] and pages == 3
    everything = client.query_orchestrations(status=OrchestrationStatus.PENDING, limit=100)
    assert {s.instance_id for s in everything.items} == set(ids)
    assert everything.continuation_token is None
    assert client.query_orchestrations(status=["COMPLETED", "FAILED"]).items == []
    state = everything.items[0]
    assert state.name == "client.alpha" and state.input == 0


def test_query_by_creation_time(client: DurableClient) -> None:
    first = client.schedule_new_orchestration(alpha, input=1)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)  # two creation times that differ (not waiting for a condition)
    second = client.schedule_new_orchestration(alpha, input=2)
    before = client.query_orchestrations(created_to=middle).items
    after = client.query_orchestrations(created_from=middle.replace(tzinfo=None)).items
    assert [s.instance_id for s in before] == [first]
    assert [s.instance_id for s in after] == [second]


def test_bad_query_arguments_are_refused(client: DurableClient) -> None:
    with pytest.raises(ValueError, match="continuation token"):
        client.query_orchestrations(continuation_token="not-a-token")
    with pytest.raises(ValueError, match="limit"):
        client.query_orchestrations(limit=0)
    with pytest.raises(ValueError):
        client.query_orchestrations(status="SLEEPING")


def test_waits_time_out_with_timeout_error(client: DurableClient) -> None:
    iid = client.schedule_new_orchestration(alpha, input=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not start within 0.3s"):
        client.wait_for_orchestration_start(iid, timeout=0.3)
    with pytest.raises(TimeoutError, match="status PENDING"):
        client.wait_for_orchestration_completion(iid, timeout=0.3)
    assert time.monotonic() - started < 3


def test_management_calls_on_unknown_instances(client: DurableClient) -> None:
    assert client.get_orchestration_state("nobody") is None
    for call in (lambda: client.get_orchestration_history("nobody"),
                 lambda: client.suspend_orchestration("nobody"),
                 lambda: client.terminate_orchestration("nobody"),
                 lambda: client.wait_for_orchestration_completion("nobody", timeout=1),
                 lambda: client.purge_orchestration("nobody")):
        with pytest.raises(OrchestrationNotFoundError, match="nobody"):
            call()


def test_scheduling_an_id_that_is_running_is_refused(client: DurableClient) -> None:
    from celery_durable import OrchestrationStateError

    client.schedule_new_orchestration(alpha, input=1, instance_id="same")
    with pytest.raises(OrchestrationStateError, match="already running"):
        client.schedule_new_orchestration(alpha, input=2, instance_id="same")
    assert client.get_orchestration_state("same").input == 1

