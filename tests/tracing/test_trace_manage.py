"""Tracing across restart and rewind (the in-process test environment, the real SDK): a rewind
keeps the instance's trace (its start is kept), a restart starts a new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402

from celery_durable import OrchestrationStatus, activity, orchestrator  # noqa: E402
from celery_durable.engine import history as h  # noqa: E402
from celery_durable.testing import DurableTestEnv  # noqa: E402

FIXED = {"on": False}


@activity(name="trace_manage.fragile")
def fragile(ctx: Any, value: int) -> int:
    if not FIXED["on"]:
        raise ConnectionError("down")
    return value


@orchestrator(name="trace_manage.flow")
def flow(ctx: Any, value: int) -> Any:
    return (yield ctx.call_activity(fragile, input=value))


def _trace_id(env: DurableTestEnv, iid: str) -> str:
    start = env.get_orchestration_history(iid)[0]
    assert start.kind == h.EXECUTION_STARTED
    return str(start.data["trace"]["traceparent"]).split("-")[1]


def test_rewind_keeps_the_trace_and_restart_starts_a_new_one(
        spans_path: Path, durable_env: DurableTestEnv) -> None:
    FIXED["on"] = False
    with trace.get_tracer("web").start_as_current_span("POST /flows"):
        iid = durable_env.schedule_new_orchestration(flow, input=3)
    assert durable_env.get_orchestration_state(iid).runtime_status is OrchestrationStatus.FAILED
    first = _trace_id(durable_env, iid)

    FIXED["on"] = True
    durable_env.rewind_orchestration(iid, reason="fixed")
    assert durable_env.get_orchestration_state(iid).output == 3
    assert _trace_id(durable_env, iid) == first

    assert durable_env.restart_orchestration(iid) == iid
    assert durable_env.get_orchestration_state(iid).runtime_status is \
        OrchestrationStatus.COMPLETED
    assert _trace_id(durable_env, iid) != first
