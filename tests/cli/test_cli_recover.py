"""``celery durable recover`` after the broker lost every message: nothing is lost, nothing is
recorded twice.

With the worker stopped (and the sweeper disabled, so that only ``recover`` can bring anything
back), instances are left waiting on every kind of thing (a start, activities, a near timer, a
far timer, children, an external event in the inbox, an unpublished outbox row); the broker's
queue is purged; ``recover`` runs (twice: the second run duplicates every delivery); then the
worker starts and every instance must complete with exactly one completion per task id.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from durable_cli_helpers import invoke, make_app, run_worker

from celery_durable import Durable, OrchestrationStatus
from celery_durable.engine import history as h
from celery_durable.runtime import messages, recovery, start_queue
from celery_durable.runtime.durable import durable_of
from celery_durable.runtime.timer_queue import timer_queue

Status = OrchestrationStatus


def durable_queues(app: Celery) -> list[str]:
    """The queues celery_durable sends to here: the episode (default) queue, and the timers and
    starts queues that every worker of it consumes."""
    found = durable_of(app)
    assert found is not None
    default = app.conf.task_default_queue
    return [default, timer_queue(found), found.episode_queue("") + start_queue.SUFFIX]


def queued(app: Celery) -> int:
    """Messages waiting in those queues."""
    with app.connection_for_write() as conn:
        # (not passive: Redis has no key for an empty queue)
        return sum(int(conn.default_channel.queue_declare(queue).message_count)
                   for queue in durable_queues(app))


def purge_queues(app: Celery) -> None:
    with app.connection_for_write() as conn:
        for queue in durable_queues(app):
            conn.default_channel.queue_declare(queue)
            conn.default_channel.queue_purge(queue)


@pytest.fixture(params=["sqlite-filesystem", "postgresql-redis"])
def stopped(request: pytest.FixtureRequest, tmp_path: Path,
            ) -> Iterator[tuple[Celery, Durable, contextlib.ExitStack]]:
    """An app and its Durable with no worker running yet and no sweeper (this module uses no
    ``cli_harness``: one embedded worker at a time, see there)."""
    with contextlib.ExitStack() as stack:
        app, found = make_app(request.param, tmp_path, stack, durable_sweeper_enabled=False)
        yield app, found, stack


def _schedule(found: Durable, name: str, input: Any = None, *, run: bool = True) -> str:
    iid = found.client.schedule_new_orchestration(name, input=input)
    if run:  # the first episode, here instead of on a worker: it publishes what it schedules
        assert found.runner.run(iid, wait=True)
    return iid


def _run_unpublished(found: Durable, monkeypatch: pytest.MonkeyPatch, name: str,
                     input: Any) -> str:
    """An instance whose episode committed but whose publication failed: its outbox stays."""
    iid = found.client.schedule_new_orchestration(name, input=input)
    with monkeypatch.context() as patched:
        def lost(app: Any, msgs: Any) -> None:
            raise ConnectionError("broker gone")

        patched.setattr(messages, "publish", lost)
        assert found.runner.run(iid, wait=True)
    return iid


def test_recover_after_the_broker_lost_everything(
        stopped: tuple[Celery, Durable, contextlib.ExitStack],
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, found, stack = stopped
    client = found.client
    sequence = _schedule(found, "e2e.sequence", 3)          # waits on an activity
    fan_out = _schedule(found, "e2e.fan_out", 3)            # waits on 3 activities
    timer = _schedule(found, "e2e.timer", 0.5)              # waits on a near timer
    pending = _schedule(found, "e2e.sequence", 2, run=False)  # never started
    parent = _schedule(found, "e2e.parent", 2)              # waits on 2 PENDING children
    event = _schedule(found, "e2e.event_or_timeout", 3600)  # waits on an event or a far timer
    client.raise_orchestration_event(event, "go")           # ... the event is in its inbox
    unpublished = _run_unpublished(found, monkeypatch, "e2e.sequence", 2)
    soon = client.schedule_new_orchestration(  # a delayed start, due within the horizon
        "e2e.sequence", input=1, start_at=datetime.now(timezone.utc) + timedelta(seconds=1))
    late = client.schedule_new_orchestration(  # ... and one beyond it
        "e2e.sequence", input=1, start_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert queued(app) > 0
    purge_queues(app)
    assert queued(app) == 0

    dry = invoke(app, "recover", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    expected = {"instances": 11, "woken": 5, "activities": 5, "timers": 1,
                "timers_left_to_sweeper": 1, "starts_left_to_sweeper": 1,
                "sub_orchestrations": 2, "outbox": 1, "problems": []}
    report = json.loads(dry.stdout)
    assert {k: report[k] for k in expected} == expected
    assert report["dry_run"] is True and report["messages"] == 12
    table = invoke(app, "recover", "--dry-run").stdout
    assert "11 running instance(s) examined. Would send:" in table
    assert "  activity messages  5" in table
    assert "Left to the sweeper (beyond the timer horizon): 1 timer(s), 1 delayed start(s)." \
        in table
    assert queued(app) == 0  # a dry run sends nothing

    result = invoke(app, "recover", "--json")
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in json.loads(result.stdout).items() if k in expected} == expected
    assert queued(app) == 12
    again = recovery.recover(found)  # every delivery twice: harmless by design
    assert (again.activities, again.timers, again.woken, again.outbox) == (5, 1, 5, 0)

    run_worker(stack, app)
    ids = [sequence, fan_out, timer, pending, parent, event, unpublished, soon]
    outputs = [client.wait_for_orchestration_completion(iid, timeout=30) for iid in ids]
    assert [state.runtime_status for state in outputs] == [Status.COMPLETED] * len(ids)
    assert [s.output for s in outputs[:2]] == [3, 3]
    assert outputs[4].output == [0, 2] and outputs[5].output == "event"
    assert client.get_orchestration_state(late).runtime_status is Status.PENDING
    everyone = [r for r in found.store.query_instances(limit=100) if r.instance_id != late]
    assert len(everyone) == 10 and {r.status for r in everyone} == {Status.COMPLETED}
    for record in everyone:
        events = client.get_orchestration_history(record.instance_id)
        scheduled = [e.task_id for e in events if e.kind in h.SCHEDULING_KINDS]
        completions = Counter(e.task_id for e in events if e.kind in h.COMPLETION_KINDS)
        assert set(completions) == set(scheduled) or record.instance_id == event
        assert all(n == 1 for n in completions.values()), (record.instance_id, completions)
        assert len(scheduled) == len(set(scheduled))
    _check_read_commands(app, parent)


def _check_read_commands(app: Celery, parent: str) -> None:
    """list, show and history, table and --json, on this backend."""
    table = invoke(app, "list", "--name", "e2e.child")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["INSTANCE", "ID", "NAME", "VERSION"]
    assert len(lines) == 3 and all("COMPLETED" in line for line in lines[1:])
    children = json.loads(invoke(app, "list", "--name", "e2e.child", "--json").stdout)
    assert {child["parent_instance_id"] for child in children} == {parent}
    shown = invoke(app, "show", parent)
    assert "status:" in shown.stdout and "COMPLETED" in shown.stdout
    assert json.loads(invoke(app, "show", parent, "--json").stdout)["output"] == [0, 2]
    history = invoke(app, "history", parent)
    assert history.stdout.count("SubOrchestrationCreated") == 2
    events = json.loads(invoke(app, "history", parent, "--json").stdout)
    assert [e["kind"] for e in events].count("SubOrchestrationCompleted") == 2


def test_recover_reports_what_it_cannot_send(tmp_path: Path) -> None:
    """An activity this process does not know (its queue is unknown) is a problem, not a guess;
    the command lists it and exits non-zero."""
    with contextlib.ExitStack() as stack:
        app, found = make_app("sqlite-filesystem", tmp_path, stack,
                              durable_sweeper_enabled=False)
        iid = _schedule(found, "e2e.sequence", 2)
        del found.registry.activities["e2e.add"]
        result = invoke(app, "recover")
        assert result.exit_code == 1
        assert "activity messages  0" in result.stdout
        problems = result.stderr.strip().splitlines()
        assert problems[0].startswith("Problem: activity 'e2e.add' (task 0 of ")
        assert iid in problems[0]
        assert problems[-1] == "Error: 1 item(s) could not be re-dispatched (see above)"


def test_recover_reports_a_far_timer_marked_dispatched(tmp_path: Path) -> None:
    """A timer beyond the horizon that the store marks dispatched is sent by nobody: recover
    says so rather than sending an ETA message that far ahead."""
    from sqlalchemy import update

    from celery_durable.store.schema import timers

    with contextlib.ExitStack() as stack:
        app, found = make_app("sqlite-filesystem", tmp_path, stack,
                              durable_sweeper_enabled=False)
        iid = _schedule(found, "e2e.timer", 3600)
        with found.store.engine.begin() as conn:
            conn.execute(update(timers).values(dispatched_at=datetime(2020, 1, 1)))
        report = recovery.recover(found, dry_run=True)
        assert (report.timers, report.timers_left_to_sweeper) == (0, 0)
        assert len(report.problems) == 1
        assert report.problems[0].startswith(f"timer 0 of {iid!r} fires at ")
        assert "marks it dispatched" in report.problems[0]
