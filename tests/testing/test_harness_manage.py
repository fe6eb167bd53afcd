"""Restart, rewind, ``ctx.send_event`` and heartbeats in the in-process test environment (the
same engine and store as the workers)."""

from __future__ import annotations

from typing import Any

from celery_durable import OrchestrationStatus, activity, orchestrator
from celery_durable.engine import history as h
from celery_durable.testing import DurableTestEnv

BROKEN = {"on": True}
CALLS: list[str] = []


@activity(name="harness_manage.step")
def step(ctx: Any, name: str) -> str:
    CALLS.append(name)
    ctx.heartbeat({"done": name})
    if name == "fragile" and BROKEN["on"]:
        raise ConnectionError("down")
    return name


@orchestrator(name="harness_manage.flow")
def flow(ctx: Any, target: str | None) -> Any:
    a = yield ctx.call_activity(step, input="sturdy")
    b = yield ctx.call_activity(step, input="fragile")
    if target:
        ctx.send_event(target, "done", data=[a, b])
    return [a, b]


@orchestrator(name="harness_manage.listener")
def listener(ctx: Any) -> Any:
    return (yield ctx.wait_for_external_event("done"))


def test_rewind_restart_and_send_event_in_the_test_environment(
        durable_env: DurableTestEnv) -> None:
    CALLS.clear()
    BROKEN["on"] = True
    target = durable_env.schedule_new_orchestration(listener)
    iid = durable_env.schedule_new_orchestration(flow, input=target)
    assert durable_env.get_orchestration_state(iid).runtime_status is OrchestrationStatus.FAILED
    assert CALLS == ["sturdy", "fragile"]

    BROKEN["on"] = False
    durable_env.rewind_orchestration(iid, reason="up again")
    state = durable_env.wait_for_orchestration_completion(iid)
    assert state.output == ["sturdy", "fragile"] and CALLS == ["sturdy", "fragile", "fragile"]
    assert durable_env.wait_for_orchestration_completion(target).output == ["sturdy", "fragile"]
    kinds = [e.kind for e in durable_env.get_orchestration_history(iid)]
    assert kinds.count(h.EXECUTION_REWOUND) == 1 and kinds.count(h.EVENT_SENT) == 1

    again = durable_env.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert again != iid
    assert durable_env.get_orchestration_state(again).runtime_status is \
        OrchestrationStatus.COMPLETED
    assert CALLS == ["sturdy", "fragile", "fragile", "sturdy", "fragile"]


@orchestrator(name="harness_manage.relay")
def relay(ctx: Any, spec: dict[str, Any]) -> Any:
    """Sends its count to the target, then continues as new until it reaches 0."""
    ctx.send_event(spec["target"], "count", data=spec["n"])
    if spec["n"] > 0:
        ctx.continue_as_new({"target": spec["target"], "n": spec["n"] - 1})
    return "done"
    yield  # a generator: the orchestrator waits on nothing


@orchestrator(name="harness_manage.counter")
def counter(ctx: Any, n: int) -> Any:
    seen = []
    for _ in range(n):
        seen.append((yield ctx.wait_for_external_event("count")))
    return seen


def test_events_sent_before_continue_as_new_are_sent(durable_env: DurableTestEnv) -> None:
    target = durable_env.schedule_new_orchestration(counter, input=3)
    iid = durable_env.schedule_new_orchestration(relay, input={"target": target, "n": 2})
    assert durable_env.wait_for_orchestration_completion(iid).output == "done"
    assert durable_env.wait_for_orchestration_completion(target).output == [2, 1, 0]
