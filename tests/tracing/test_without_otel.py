"""Without OpenTelemetry installed the package imports and runs, and keeps no trace context."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_runs_without_opentelemetry() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from celery_durable import orchestrator, activity, tracing
        from celery_durable.testing import DurableTestEnv
        assert not tracing.OTEL_AVAILABLE

        @activity(name="inc")
        def inc(ctx, x):
            return x + 1

        @orchestrator(name="plus_two")
        def plus_two(ctx, x):
            x = yield ctx.call_activity(inc, input=x)
            return (yield ctx.call_activity(inc, input=x))

        with DurableTestEnv() as env:
            iid = env.schedule_new_orchestration(plus_two, input=1)
            state = env.wait_for_orchestration_completion(iid)
            assert state.output == 3, state
            started = env.store.get_history(iid)[0]
            assert started.kind == "ExecutionStarted" and "trace" not in started.data
        assert "opentelemetry.trace" not in sys.modules
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
