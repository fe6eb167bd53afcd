"""continue_as_new: new input, new version, carried-over events, and what the history records."""

from __future__ import annotations

from typing import Any

from replay_driver import (
    T0,
    Driver,
    Status,
    done,
    event_key,
    kinds,
    raised,
    resume,
    started,
    suspend,
)

from celery_durable.engine import Orchestration, OrchestrationContext
from celery_durable.engine import history as h


def _counter(ctx: OrchestrationContext, n: int) -> Any:
    total = yield ctx.call_activity("add", input=n)
    if total < 3:
        ctx.continue_as_new(total, save_events=True)
        return "ignored"
    return total


def test_continue_as_new_ends_the_execution_with_the_new_input() -> None:
    d = Driver(_counter, "loop")
    d.run(started(0, version="1"))
    result = d.run(done(0, 1))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.is_finished
    assert result.output is None and result.actions == []
    assert result.continue_as_new is not None
    assert (result.continue_as_new.input, result.continue_as_new.version) == (1, "1")
    assert result.continue_as_new.carryover == []
    assert [(e.seq, e.kind, e.data) for e in result.new_events] == [
        (2, h.TASK_COMPLETED, 1),
        (3, h.CONTINUED_AS_NEW, {"input": 1, "version": None}),
        (4, h.EXECUTION_COMPLETED,
         {"status": "CONTINUED_AS_NEW", "output": None, "failure": None}),
    ]
    d.check_prefixes()
    # the next execution (the runtime starts it with generation + 1) finishes
    nxt = Driver(_counter, "loop")
    nxt.run(started(1, version="1", generation=1))
    final = nxt.run(done(0, 3))
    assert final.status is Status.COMPLETED and final.output == 3


def test_continue_as_new_from_a_plain_function_and_with_a_new_version() -> None:
    def orch(ctx: OrchestrationContext, n: int) -> Any:
        ctx.continue_as_new({"n": n + 1}, new_version="2")

    result = Driver(orch).run(started(5, version="1"))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.continue_as_new is not None
    assert (result.continue_as_new.input, result.continue_as_new.version) == ({"n": 6}, "2")
    assert result.new_events[1].data == {"input": {"n": 6}, "version": "2"}


def test_continue_as_new_followed_by_a_yield_ends_at_that_yield() -> None:
    reached: list[bool] = []

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        ctx.continue_as_new("again")
        yield ctx.wait_for_external_event("never")
        reached.append(True)

    d = Driver(orch)
    d.run(started())
    result = d.run(done(0), raised("never"))
    assert result.status is Status.CONTINUED_AS_NEW
    assert reached == []
    assert [e.kind for e, _ in result.discarded] == [h.EVENT_RAISED]
    assert "already ended (CONTINUED_AS_NEW)" in result.discarded[0][1]


def test_unclaimed_events_are_carried_over_with_save_events() -> None:
    def orch(ctx: OrchestrationContext, n: int) -> Any:
        yield ctx.call_activity("a")
        ctx.continue_as_new(n + 1, save_events=True)

    d = Driver(orch)
    d.run(started(0))
    d.run(raised("Early", {"x": 1}))
    result = d.run(raised("second", 2), done(0), raised("later", 3))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.continue_as_new is not None
    carried = result.continue_as_new.carryover
    assert [(e.kind, e.name, e.data) for e in carried] == [
        (h.EVENT_RAISED, "Early", {"x": 1}), (h.EVENT_RAISED, "second", 2),
        (h.EVENT_RAISED, "later", 3)]
    # the event after the end is not appended to this execution's history
    assert kinds(result.new_events) == [
        h.EVENT_RAISED, h.TASK_COMPLETED, h.CONTINUED_AS_NEW, h.EXECUTION_COMPLETED]
    assert result.discarded == []

    # the new execution receives them first and a wait claims them
    def next_gen(ctx: OrchestrationContext, n: int) -> Any:
        first = yield ctx.wait_for_external_event("early")
        later = yield ctx.wait_for_external_event("LATER")
        return [n, first, later]

    nxt = Driver(next_gen)
    final = nxt.run(started(1, generation=1), *carried)
    assert final.status is Status.COMPLETED and final.output == [1, {"x": 1}, 3]


def test_without_save_events_unclaimed_events_are_dropped() -> None:
    def orch(ctx: OrchestrationContext, n: int) -> Any:
        yield ctx.call_activity("a")
        ctx.continue_as_new(n + 1)

    d = Driver(orch)
    d.run(started(0), raised("early", 1))
    result = d.run(done(0), raised("later", 2))
    assert result.continue_as_new is not None and result.continue_as_new.carryover == []
    assert [e.name for e, _ in result.discarded] == ["later"]


def test_events_buffered_while_suspended_are_carried_over() -> None:
    """Regression: events raised while suspended, after the completion that made the orchestrator
    continue as new, were dropped instead of carried over."""

    def orch(ctx: OrchestrationContext, n: int) -> Any:
        yield ctx.call_activity("a")
        ctx.continue_as_new(n + 1, save_events=True)

    d = Driver(orch)
    d.run(started(0))
    d.run(suspend(), raised("before", 1), done(0), raised("late", 2))
    result = d.run(resume(), raised("after", 3))
    assert result.status is Status.CONTINUED_AS_NEW
    assert result.continue_as_new is not None
    assert [(e.name, e.data) for e in result.continue_as_new.carryover] == [
        ("before", 1), ("late", 2), ("after", 3)]


def test_replaying_a_prefix_that_ends_after_continued_as_new_does_not_repeat_it() -> None:
    d = Driver(_counter, "loop")
    d.run(started(0))
    d.run(done(0, 1))
    cut = [e.kind for e in d.history].index(h.CONTINUED_AS_NEW) + 1
    orchestration = Orchestration(_counter, "loop")
    orchestration.replay(d.history[:cut])
    result = orchestration.run([], T0)
    assert [event_key(e) for e in result.new_events] == [event_key(d.history[cut])]
    assert result.status is Status.CONTINUED_AS_NEW
