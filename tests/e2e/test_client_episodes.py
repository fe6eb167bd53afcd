"""``durable_client_episodes``: the client runs the episode a start or an event calls for in its
own process (one broker hop less), and leaves it to a worker when one holds the instance or the
episode fails there. A client-side Durable with the setting on shares the backend's store and
broker with the worker of the matrix."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import workflows as wf
from celery import Celery
from conftest import Harness
from test_features import assert_no_duplicates
from workers import wait_until

from celery_durable import Durable, OrchestrationStatus

COMPLETED = OrchestrationStatus.COMPLETED


@pytest.fixture
def here(harness: Harness) -> Iterator[Durable]:
    """A client whose episodes run in this process."""
    conf = harness.app.conf
    app = Celery(f"client-{harness.name}", broker=conf.broker_url, set_as_current=False)
    app.conf.update(broker_transport_options=conf.broker_transport_options,
                    task_default_queue=conf.task_default_queue, result_backend=None,
                    task_ignore_result=True, durable_client_episodes=True)
    durable = Durable(app, store_url=harness.durable.store.url)
    assert durable.settings.client_episodes and not harness.durable.settings.client_episodes
    yield durable
    durable.store.dispose()


def test_start_and_event_run_their_episodes_in_the_client(harness: Harness,
                                                          here: Durable) -> None:
    client = here.client
    iid = client.schedule_new_orchestration(wf.custom_status)
    # no waiting: the start's episode has run before schedule_new_orchestration returned
    state = client.get_orchestration_state(iid)
    assert state.runtime_status is OrchestrationStatus.RUNNING
    assert state.custom_status == {"step": 1}
    client.raise_orchestration_event(iid, "next")
    state = client.get_orchestration_state(iid)
    assert (state.runtime_status, state.output) == (COMPLETED, "done"), state
    assert here.runner.episodes == 2


def test_activities_still_run_on_the_worker(harness: Harness, here: Durable) -> None:
    client = here.client
    iid = client.schedule_new_orchestration(wf.step_then_wait, input="x")
    kinds = [e.kind for e in client.get_orchestration_history(iid)]
    assert kinds[-1] == "TaskScheduled", kinds  # sent by the client's episode
    harness.client.wait_for_orchestration_start(iid, timeout=30)
    wait_until("the activity's completion recorded", lambda: "TaskCompleted" in
               [e.kind for e in client.get_orchestration_history(iid)],
               time.monotonic() + 30, interval=0.02)
    client.raise_orchestration_event(iid, "finish")
    state = client.get_orchestration_state(iid)
    assert (state.runtime_status, state.output) == (COMPLETED, "x"), state
    assert_no_duplicates(harness, iid)


def test_an_instance_a_worker_holds_is_left_to_a_worker(harness: Harness,
                                                        here: Durable) -> None:
    if harness.name.startswith("sqlite"):
        pytest.skip("SQLite has no row locks to skip: an episode there waits for the holder")
    client = here.client
    iid = client.schedule_new_orchestration(wf.custom_status)
    episodes = here.runner.episodes
    with harness.durable.store.episode(iid, wait=True) as held:  # what a worker's episode holds
        assert held is not None
        client.raise_orchestration_event(iid, "next")  # returns at once: the row is locked
        assert here.runner.episodes == episodes
    state = harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert (state.runtime_status, state.output) == (COMPLETED, "done"), state


def test_an_episode_that_fails_in_the_client_is_left_to_a_worker(
        harness: Harness, here: Durable, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    client = here.client
    iid = client.schedule_new_orchestration(wf.custom_status)

    def store_gone(*_: object, **__: object) -> bool:
        raise ConnectionError("the store went away mid-episode")

    monkeypatch.setattr(here.runner, "run", store_gone)
    with caplog.at_level(logging.WARNING, logger="celery_durable.client"):
        client.raise_orchestration_event(iid, "next")
        started = client.schedule_new_orchestration(wf.custom_status)
    assert "a worker will run it" in caplog.text
    state = harness.client.wait_for_orchestration_completion(iid, timeout=30)
    assert (state.runtime_status, state.output) == (COMPLETED, "done"), state
    harness.client.wait_for_orchestration_start(started, timeout=30)
    wait_until("the start's episode run by a worker", lambda: client.get_orchestration_state(
        started).custom_status == {"step": 1}, time.monotonic() + 30, interval=0.02)

