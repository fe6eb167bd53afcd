"""Orchestrators and activities of the bad-input, race and timer tests (registered on every
``Durable``, as ``@orchestrator`` / ``@activity`` without one do)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from celery_durable import TaskFailedError, activity, orchestrator, when_all


class Unprintable(Exception):
    """An exception whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


@activity(name="edge.echo")
def echo(ctx: Any, value: Any) -> Any:
    return value


@activity(name="edge.big")
def big(ctx: Any, size: int) -> str:
    return "x" * size


@activity(name="edge.pause")
def pause(ctx: Any, seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _failure(exc: TaskFailedError) -> dict[str, str]:
    return {"error_type": exc.details.error_type, "message": exc.details.message}


# -- bad output ------------------------------------------------------------------------------------

@orchestrator(name="edge.wait_event")
def wait_event(ctx: Any, name: str) -> Any:
    return (yield ctx.wait_for_external_event(name))


@orchestrator(name="edge.returns_object")
def returns_object(ctx: Any, _: Any) -> Any:
    yield ctx.call_activity(echo, input=1)
    return {"when": datetime(2025, 1, 1)}


@orchestrator(name="edge.raises_unprintable")
def raises_unprintable(ctx: Any, _: Any) -> Any:
    yield ctx.call_activity(echo, input=1)
    raise Unprintable()


@orchestrator(name="edge.bad_custom_status")
def bad_custom_status(ctx: Any, _: Any) -> Any:
    yield ctx.call_activity(echo, input=1)
    ctx.set_custom_status({"ids": {1, 2}})
    return "unreachable"


@orchestrator(name="edge.big_output")
def big_output(ctx: Any, size: int) -> Any:
    yield ctx.call_activity(echo, input=1)
    return "x" * size


@orchestrator(name="edge.big_activity_result")
def big_activity_result(ctx: Any, size: int) -> Any:
    try:
        yield ctx.call_activity(big, input=size)
    except TaskFailedError as exc:
        return _failure(exc)
    return "unreachable"


@orchestrator(name="edge.unknown_activity")
def unknown_activity(ctx: Any, _: Any) -> Any:
    try:
        yield ctx.call_activity("edge.no_such_activity", input=1)
    except TaskFailedError as exc:
        return _failure(exc)
    return "unreachable"


@orchestrator(name="edge.bad_child_id")
def bad_child_id(ctx: Any, _: Any) -> Any:
    yield ctx.call_activity(echo, input=1)
    return (yield ctx.call_sub_orchestrator(wait_event, input="e", instance_id="child\x00id"))


# -- races -----------------------------------------------------------------------------------------

@orchestrator(name="edge.collect")
def collect(ctx: Any, spec: dict[str, Any]) -> Any:
    """Receive ``events`` events named "e" while ``activities`` activities run alongside, and an
    activity in sequence after every ``every`` events; return the events in arrival order."""
    running = [ctx.call_activity(pause, input=(i % 5) * 0.02) for i in range(spec["activities"])]
    events: list[Any] = []
    for n in range(spec["events"]):
        events.append((yield ctx.wait_for_external_event("e")))
        if (n + 1) % spec["every"] == 0:
            yield ctx.call_activity(pause, input=0.01)
    done = yield when_all(running)
    return {"events": events, "activities": len(done)}


# -- timers ----------------------------------------------------------------------------------------

@orchestrator(name="edge.timers")
def timers(ctx: Any, spec: dict[str, Any]) -> Any:
    """``count`` timers that all fire at ``at`` (ISO); returns when every one has fired."""
    at = datetime.fromisoformat(spec["at"])
    yield when_all([ctx.create_timer(at) for _ in range(spec["count"])])
    return spec["count"]


@orchestrator(name="edge.hello")
def hello(ctx: Any, value: Any) -> Any:
    return (yield ctx.call_activity(echo, input=value))


@orchestrator(name="edge.immediate")
def immediate(ctx: Any, value: Any) -> Any:
    """Returns its input at once (no yield is reached)."""
    if value is None:
        yield ctx.wait_for_external_event("never")
    return value
