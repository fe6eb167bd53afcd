"""OrchestrationContext: custom status, new_uuid, is_replaying and the replay-safe logger, version."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from replay_driver import T0, Driver, done, started

from celery_durable.engine import Orchestration, OrchestrationContext, OrchestrationStatus, execute

Status = OrchestrationStatus


def test_custom_status_is_reported_and_survives_replay() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        ctx.set_custom_status({"step": "charging"})
        yield ctx.call_activity("charge")
        ctx.set_custom_status("shipping")
        yield ctx.call_activity("ship")
        return ctx.custom_status

    d = Driver(orch)
    assert d.run(started()).custom_status == {"step": "charging"}
    assert d.run(done(0)).custom_status == "shipping"
    cold = execute(orch, "inst", d.history, [], T0)
    assert cold.custom_status == "shipping" and cold.new_events == []
    result = d.run(done(1))
    assert result.status is Status.COMPLETED
    assert result.custom_status == "shipping" and result.output == "shipping"


def test_custom_status_is_none_until_set_and_must_be_json() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        ctx.set_custom_status(object())

    d = Driver(orch)
    assert d.run(started()).custom_status is None
    result = d.run(done(0))
    assert result.status is Status.FAILED
    assert result.failure is not None and "custom status" in result.failure.message


def _uuids(ctx: OrchestrationContext, _: Any) -> Any:
    first = [ctx.new_uuid(), ctx.new_uuid()]
    yield ctx.call_activity("a")
    return [*first, ctx.new_uuid()]


def test_new_uuid_is_deterministic_per_call_and_per_instance() -> None:
    d = Driver(_uuids, "one")
    d.run(started())
    result = d.run(done(0))
    values = result.output
    assert len(set(values)) == 3
    assert all(uuid.UUID(v).version == 5 for v in values)
    # replaying the same history gives the same values
    assert execute(_uuids, "one", d.history[:-1], [done(0)], T0).output == values
    # another instance gets other values
    other = Driver(_uuids, "two")
    other.run(started())
    assert set(other.run(done(0)).output).isdisjoint(values)


def test_new_uuid_differs_across_generations() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        return ctx.new_uuid()

    gen0 = execute(orch, "loop", [], [started(generation=0)], T0).output
    gen1 = execute(orch, "loop", [], [started(generation=1)], T0).output
    assert gen0 != gen1


def test_is_replaying_is_true_for_history_and_false_for_new_events() -> None:
    flags: list[tuple[str, bool]] = []

    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        flags.append(("start", ctx.is_replaying))
        yield ctx.call_activity("a")
        flags.append(("a", ctx.is_replaying))
        yield ctx.call_activity("b")
        flags.append(("b", ctx.is_replaying))

    d = Driver(orch)
    d.run(started())
    d.run(done(0))
    flags.clear()
    orchestration = Orchestration(orch, "inst")
    orchestration.replay(d.history)
    assert flags == [("start", True), ("a", True)]
    orchestration.run([done(1)], T0)
    assert flags == [("start", True), ("a", True), ("b", False)]


def test_replay_safe_logger_logs_only_when_not_replaying(caplog: pytest.LogCaptureFixture) -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        ctx.logger.info("starting %s", "now")
        yield ctx.call_activity("a")
        ctx.logger.warning("after a")
        yield ctx.call_activity("b")
        ctx.logger.info("after b")

    caplog.set_level(logging.INFO, logger="celery_durable.orchestrator")
    o = Orchestration(orch, "logged")
    first = o.run([started()], T0)
    history = first.new_events
    history += o.run([done(0)], T0).new_events
    assert [r.getMessage() for r in caplog.records] == ["[logged] starting now", "[logged] after a"]
    assert caplog.records[1].levelno == logging.WARNING
    caplog.clear()
    execute(orch, "logged", history, [done(1)], T0)  # replays start and a, runs b
    assert [r.getMessage() for r in caplog.records] == ["[logged] after b"]
    assert all(r.name == "celery_durable.orchestrator" for r in caplog.records)


def test_version_comes_from_execution_started() -> None:
    def orch(ctx: OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("a")
        return [ctx.version, ctx.name, ctx.instance_id, ctx.parent_instance_id]

    d = Driver(orch, "child-1", default_version="7")
    d.run(started(name="flow", version="2.1", parent="parent-1"))
    assert d.run(done(0)).output == ["2.1", "flow", "child-1", "parent-1"]
    d2 = Driver(orch, "plain", default_version="7")
    d2.run(started(name="flow"))
    assert d2.run(done(0)).output == [None, "flow", "plain", None]
