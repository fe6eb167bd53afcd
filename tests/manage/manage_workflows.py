"""Orchestrators and activities of the instance-management tests (restart, rewind, send_event,
terminate, heartbeats). Every activity run appends its name to the file ``runs`` of its input's
``dir``, so that tests count executions across worker processes."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from celery import shared_task

from celery_durable import RetryPolicy, activity, orchestrator


def note_run(folder: str, name: str) -> None:
    with open(os.path.join(folder, "runs"), "a") as runs:
        runs.write(f"{name}\n")


def runs(folder: str) -> dict[str, int]:
    """How many times each activity ran (from the ``runs`` file)."""
    path = os.path.join(folder, "runs")
    counts: dict[str, int] = {}
    if os.path.exists(path):
        with open(path) as lines:
            for line in lines:
                counts[line.strip()] = counts.get(line.strip(), 0) + 1
    return counts


@activity(name="manage.ok")
def ok(ctx: Any, spec: dict[str, Any]) -> str:
    note_run(spec["dir"], spec["name"])
    return spec["name"]


@activity(name="manage.flaky")
def flaky(ctx: Any, spec: dict[str, Any]) -> str:
    """Fails until the file ``fixed`` exists in ``dir``."""
    note_run(spec["dir"], spec["name"])
    if not os.path.exists(os.path.join(spec["dir"], "fixed")):
        raise RuntimeError(f"{spec['name']} is broken")
    return spec["name"]


TWICE = RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=2)


@orchestrator(name="manage.pipeline")
def pipeline(ctx: Any, folder: str) -> Any:
    """ok, then flaky (two attempts), then ok again."""
    first = yield ctx.call_activity(ok, input={"dir": folder, "name": "first"})
    middle = yield ctx.call_activity(flaky, input={"dir": folder, "name": "flaky"},
                                     retry_policy=TWICE)
    last = yield ctx.call_activity(ok, input={"dir": folder, "name": "last"})
    return [first, middle, last]


@orchestrator(name="manage.child")
def child(ctx: Any, folder: str) -> Any:
    done = yield ctx.call_activity(ok, input={"dir": folder, "name": "child-ok"})
    fixed = yield ctx.call_activity(flaky, input={"dir": folder, "name": "child-flaky"})
    return [done, fixed]


@orchestrator(name="manage.parent")
def parent(ctx: Any, folder: str) -> Any:
    first = yield ctx.call_activity(ok, input={"dir": folder, "name": "parent-ok"})
    below = yield ctx.call_sub_orchestrator(child, input=folder)
    return [first, *below]


@orchestrator(name="manage.waiter")
def waiter(ctx: Any, folder: str) -> Any:
    """Runs an activity, then waits for "go"."""
    first = yield ctx.call_activity(ok, input={"dir": folder, "name": "waiter-ok"})
    go = yield ctx.wait_for_external_event("go")
    return [first, go]


@orchestrator(name="manage.receiver")
def receiver(ctx: Any) -> Any:
    """Waits for "ping" (sent by another orchestration), then for "end"."""
    ping = yield ctx.wait_for_external_event("ping")
    yield ctx.wait_for_external_event("end")
    return ping


@orchestrator(name="manage.sender")
def sender(ctx: Any, spec: dict[str, Any]) -> Any:
    """Runs an activity, sends "ping" to ``spec["target"]``, runs another activity."""
    yield ctx.call_activity(ok, input={"dir": spec["dir"], "name": "before-send"})
    ctx.send_event(spec["target"], "ping", data={"from": ctx.instance_id})
    yield ctx.call_activity(ok, input={"dir": spec["dir"], "name": "after-send"})
    return "sent"


@activity(name="manage.long")
def long_running(ctx: Any, spec: dict[str, Any]) -> str:
    """Ticks (a line in ``ticks``) every 50 ms for ``seconds`` (``later_seconds`` when it ran
    before)."""
    first = "long" not in runs(spec["dir"])
    note_run(spec["dir"], "long")
    seconds = spec["seconds"] if first else spec.get("later_seconds", spec["seconds"])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(os.path.join(spec["dir"], "ticks"), "a") as ticks:
            ticks.write(".\n")
        time.sleep(0.05)
    return "finished"


@orchestrator(name="manage.long_runner")
def long_runner(ctx: Any, spec: dict[str, Any]) -> Any:
    result = yield ctx.call_activity(long_running, input=spec)
    return result


@activity(name="manage.steps", heartbeat_timeout=timedelta(seconds=2))
def steps(ctx: Any, spec: dict[str, Any]) -> list[int]:
    """Does steps 0..4, heartbeating each; resumes after the last step a lost run reported.
    The first run hangs after step 2 (until the file ``release`` exists)."""
    note_run(spec["dir"], "steps")
    start = 0 if ctx.last_heartbeat is None else ctx.last_heartbeat["step"] + 1
    done = []
    for step in range(start, 5):
        done.append(step)
        ctx.heartbeat({"step": step})
        if step == 2 and ctx.last_heartbeat is None:
            while not os.path.exists(os.path.join(spec["dir"], "release")):
                time.sleep(0.05)
            raise RuntimeError("the hung run was released")
    return done


@orchestrator(name="manage.stepper")
def stepper(ctx: Any, spec: dict[str, Any]) -> Any:
    result = yield ctx.call_activity(steps, input=spec)
    return result


@shared_task(name="manage.plain_flaky")
def plain_flaky(folder: str, name: str) -> str:
    """A plain Celery task (called with ctx.call_task): fails until ``fixed`` exists."""
    note_run(folder, name)
    if not os.path.exists(os.path.join(folder, "fixed")):
        raise RuntimeError(f"{name} is broken")
    return name


@orchestrator(name="manage.task_caller")
def task_caller(ctx: Any, folder: str) -> Any:
    first = yield ctx.call_activity(ok, input={"dir": folder, "name": "before-task"})
    called = yield ctx.call_task("manage.plain_flaky", args=(folder, "plain"))
    return [first, called]
