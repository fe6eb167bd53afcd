"""Structural costs, counted (never timed): replay work per fan-out, SQL statements per step,
message sizes against history length, broker messages per timer.

- replay work: ``durable.runner.events_processed`` counts every history event the engine replayed
  or was fed; a fan-out of N must stay O(N) (at most 3N), which needs warm episodes to feed only
  the events they have not seen (DESIGN.md, Performance targets).
- SQL statements per step: tests/perf/test_step_costs.py.
- messages: every message published in this process is seen through Celery's
  ``before_task_publish`` signal, with its body and headers as they go to the broker.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import workflows as wf
from celery import Celery
from celery.signals import before_task_publish
from conftest import Harness, make_app
from kombu.utils.json import dumps as kombu_dumps

from celery_durable import Durable, OrchestrationStatus, orchestrator, when_all
from celery_durable.engine import history as h
from celery_durable.runtime import messages
from celery_durable.runtime.episode import completion_item
from celery_durable.runtime.sweeper import sweep

pytestmark = pytest.mark.e2e

COMPLETED = OrchestrationStatus.COMPLETED
FAN_OUT = 200


@orchestrator(name="e2e.costs.long_history")
def long_history(ctx, n):
    """Probes (a timer, a sub-orchestration, an activity) at a short history, then a fan-out of
    ``n`` that makes the history ~2n events long, then the same probes again."""
    for _ in range(2):
        yield ctx.create_timer(timedelta(milliseconds=1))
        yield ctx.call_sub_orchestrator(wf.child, input=1)
        yield ctx.call_activity(wf.echo, input="probe")
        if _ == 0:
            yield when_all([ctx.call_activity(wf.echo, input=i) for i in range(n)])
    return n


# -- helpers -----------------------------------------------------------------------------------

class Published:
    """Messages published in this process while active: (task name, body, headers)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _seen(self, sender: str | None = None, body: Any = None, headers: Any = None,
              **_: Any) -> None:
        with self._lock:
            self.messages.append((sender or "", body, dict(headers or {})))

    @contextlib.contextmanager
    def recording(self) -> Iterator[Published]:
        before_task_publish.connect(self._seen, weak=False)
        try:
            yield self
        finally:
            before_task_publish.disconnect(self._seen)

    def of(self, task: str, instance_id: str) -> list[tuple[Any, dict[str, Any]]]:
        """Messages of ``task`` that concern ``instance_id`` (as first argument or header)."""
        found = []
        for name, body, headers in self.messages:
            args = body[0] if isinstance(body, (list, tuple)) and body else []
            durable = headers.get(messages.DURABLE_HEADER) or [None]
            if name == task and instance_id in (durable[0], args[0] if args else None):
                found.append((body, headers))
        return found


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")


def size(body: Any, headers: dict[str, Any]) -> int:
    """Bytes of the message's JSON body plus its headers (as Celery's protocol 2 sends them).

    Counted at a fixed width: each ISO timestamp (isoformat drops a zero microsecond part) and
    the ``parent_id`` / ``root_id`` Celery copies from the task that published the message (an
    episode task's uuid, or an activity's deterministic id when the episode ran inline)."""
    fixed = {**headers, **{k: "i" * 36 for k in ("parent_id", "root_id") if headers.get(k)}}
    text = kombu_dumps(body) + json.dumps(fixed, default=str, sort_keys=True)
    return len(_TIMESTAMP.sub("T" * 32, text))


def replay_counters(durable: Durable) -> tuple[int, int, int, int]:
    runner = durable.runner
    return runner.events_processed, runner.episodes, runner.cache.hits, runner.cache.misses


@contextlib.contextmanager
def workerless(tmp: Path, backend: str = "sqlite-filesystem") -> Iterator[tuple[Celery, Durable]]:
    """An app and Durable with no worker (and no sweeper): the test runs the episodes itself;
    what they publish stays in the (temporary) broker."""
    with contextlib.ExitStack() as stack:
        yield make_app(backend, tmp, stack, durable_sweeper_enabled=False)


def first_episode(durable: Durable, orchestrator: Any, input: Any) -> tuple[str, str]:
    """Schedule and run the first episode here; returns (instance id, execution id)."""
    iid = durable.client.schedule_new_orchestration(orchestrator, input=input)
    assert durable.runner.run(iid, wait=True)
    record = durable.store.get_instance(iid)
    assert record is not None and record.status is OrchestrationStatus.RUNNING
    return iid, record.execution_id


def scheduled_task_ids(durable: Durable, instance_id: str) -> list[int]:
    return [e.task_id for e in durable.store.get_history(instance_id)
            if e.kind == "TaskScheduled"]


# -- (a) replay work of a fan-out --------------------------------------------------------------

def test_fan_out_replay_work_is_linear(harness: Harness) -> None:
    """A fan-out of N: the engine replays or is fed at most 3N history events in total (with
    the warm cache: N+1, the start and each completion fed once)."""
    before = replay_counters(harness.durable)
    with Published().recording() as published:
        state = harness.run(wf.fan_out, FAN_OUT, timeout=120)
    events, episodes, hits, misses = (a - b for a, b in
                                      zip(replay_counters(harness.durable), before, strict=True))
    assert state.runtime_status is COMPLETED and state.output == sum(range(FAN_OUT))
    wake_ups = sum(1 for task, _, _ in published.messages if task == messages.EPISODE_TASK)
    print(f"{harness.name}: fan-out of {FAN_OUT}: {events} events processed in {episodes} "
          f"episodes ({hits} cache hits, {misses} misses), {wake_ups} wake-up messages")
    # completions that find the instance locked leave one wake-up between them, not one each
    # (measured: 5-6 on PostgreSQL + Redis, against 112-121 without coalescing)
    assert wake_ups <= FAN_OUT // 4, f"{wake_ups} wake-ups for a fan-out of {FAN_OUT}"
    assert events <= 3 * FAN_OUT, (
        f"{events} events processed for a fan-out of {FAN_OUT} ({events / FAN_OUT:.1f} per "
        f"activity; {episodes} episodes, {misses} cache misses)")


def test_fan_out_replay_work_with_two_worker_processes(tmp_path: Path) -> None:
    """Two worker processes (two Durables on one store: two state caches) record a fan-out's
    completions in turn. Each episode runs after the other process's: its cached state is one
    episode behind. Total replay work must stay O(N): a state behind the store replays only
    the events it has not seen (each cache at most the whole history once), not the whole
    history per episode (~N^2 = 60,000 events here)."""
    n = FAN_OUT
    with workerless(tmp_path) as (app, durable):
        other_app = Celery("e2e-costs-other", broker=app.conf.broker_url, set_as_current=False)
        other_app.conf.update(app.conf.table(with_defaults=False))
        other = Durable(other_app, store_url=durable.store.url)
        try:
            iid, execution = first_episode(durable, wf.fan_out, n)
            task_ids = scheduled_task_ids(durable, iid)
            assert len(task_ids) == n
            before = [replay_counters(d) for d in (durable, other)]
            now = datetime.now(timezone.utc)
            for i, task_id in enumerate(task_ids):
                item = completion_item(execution, h.task_completed(task_id, i, now))
                assert (durable, other)[i % 2].runner.run(iid, [item])
            after = [replay_counters(d) for d in (durable, other)]
            record = durable.store.get_instance(iid)
            assert record is not None and record.status is COMPLETED
            assert record.output == sum(range(n))
        finally:
            other.store.dispose()
    events = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    misses = sum(a[3] - b[3] for a, b in zip(after, before, strict=True))
    history_len = record.history_len
    print(f"two processes, fan-out of {n}: {events} events processed, {misses} cache misses, "
          f"history {history_len} events")
    bound = 2 * history_len + n  # each cache sees every event once, plus the N completions fed
    assert events <= bound, f"{events} events processed ({events / n:.1f} per activity)"


def test_episode_right_after_a_commit_feeds_only_new_events(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    """Two threads of one worker: B asks for the instance's lock while A is between its commit
    and putting its state back into the cache. B must still feed only its new event: were the
    state put back after the lock is released, B would find none and replay the whole history
    (as the harness' fan-outs did now and then: up to 4,777 events for N=200)."""
    with workerless(tmp_path) as (_app, durable):
        runner = durable.runner
        iid, execution = first_episode(durable, wf.fan_out, 50)
        task_ids = scheduled_task_ids(durable, iid)
        now = datetime.now(timezone.utc)
        items = [completion_item(execution, h.task_completed(t, t, now)) for t in task_ids[:3]]
        assert runner.run(iid, [items[0]])  # warm: the cache holds the state
        put = runner.cache.put
        a_committed, b_done = threading.Event(), threading.Event()
        b_events: list[int] = []

        def put_after_b(*args: Any) -> None:
            if threading.current_thread().name == "episode-A":
                a_committed.set()
                b_done.wait(timeout=1)  # B's episode, unless the lock keeps B waiting
            put(*args)

        def run_b() -> None:
            a_committed.wait(timeout=10)
            before = runner.events_processed
            try:
                runner.run(iid, [items[2]], wait=True)
            finally:
                b_events.append(runner.events_processed - before)
                b_done.set()

        a_ran: list[bool] = []
        monkeypatch.setattr(runner.cache, "put", put_after_b)
        thread_a = threading.Thread(target=lambda: a_ran.append(runner.run(iid, [items[1]])),
                                    name="episode-A")
        thread_b = threading.Thread(target=run_b, name="episode-B")
        thread_b.start()
        thread_a.start()
        thread_a.join(timeout=20)
        thread_b.join(timeout=20)
        history_len = durable.store.get_instance(iid).history_len
        assert a_ran == [True] and b_events, "episode A or B did not run"
        assert b_events[0] <= 2, (
            f"episode B processed {b_events[0]} events for 1 new one: it replayed the whole "
            f"history (now {history_len} events) because A had not put its state back yet")


# -- (b) SQL statements per activity step: tests/perf/test_step_costs.py (in-process, exact,
#    PostgreSQL and SQLite, at history lengths up to ~2,400) -------------------------------------

# -- (c) message sizes against history length --------------------------------------------------

def test_messages_do_not_grow_with_history(harness: Harness) -> None:
    """The activity, timer and orchestration (sub-orchestration wake-up) messages an episode
    publishes at history length ~10 and at ~1,000 have the same size (give or take the digits of
    a larger task id)."""
    n = 500
    with Published().recording() as published:
        state = harness.run(long_history, n, timeout=120)
    assert state.runtime_status is COMPLETED
    iid = state.instance_id
    history = harness.client.get_orchestration_history(iid)
    assert len(history) > 2 * n
    probes = [(b, hd) for b, hd in published.of("e2e.echo", iid) if b[0] == ["probe"]]
    timers = published.of(messages.TIMER_TASK, iid)
    children = [published.of(messages.EPISODE_TASK, f"{iid}:{t}")
                for t in (e.task_id for e in history if e.kind == "SubOrchestrationCreated")]
    report = {}
    for what, found in [("activity", probes), ("timer", timers),
                        ("orchestration", [c[0] for c in children if c])]:
        assert len(found) >= 2, f"expected the {what} probe at both ends, got {len(found)}"
        first, last = size(*found[0]), size(*found[-1])
        assert last - first <= 12, (
            f"{what} message grew from {first} to {last} bytes while history grew to "
            f"{len(history)} events:\n{found[0]}\n{found[-1]}")
        report[what] = (first, last)
    print(f"{harness.name}: message bytes at history ~10 -> {len(history)}: {report}")


# -- broker messages per timer ------------------------------------------------------------------

def test_near_timer_is_published_once(tmp_path: Path) -> None:
    """A timer within the horizon goes to the broker once, as an ETA message from the episode's
    outbox; the sweeper does not send it again (it would cost a second message and episode)."""
    with workerless(tmp_path) as (_app, durable), Published().recording() as published:
        iid, _ = first_episode(durable, wf.timer, 60.0)
        assert len(published.of(messages.TIMER_TASK, iid)) == 1  # the ETA message
        report = sweep(durable)
        sent = published.of(messages.TIMER_TASK, iid)
        assert (report.timers, len(sent)) == (0, 1), (
            f"the sweep sent the timer again: {report}, {len(sent)} timer messages")
