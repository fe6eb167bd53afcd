"""One orchestration, one trace, across a client process and ``celery worker --pool prefork``
subprocesses (PostgreSQL + Redis db 15), each with the real OpenTelemetry SDK writing its spans
to a file of its own; the worker is restarted while the orchestration waits for its event, so the
episodes after it replay the history in a new process. With and without
opentelemetry-instrumentation-celery."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.celery")

import span_files  # noqa: E402
import trace_checks  # noqa: E402
from services import REDIS_URL, database, require  # noqa: E402
from workers import (  # noqa: E402
    WorkerProcess,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, OrchestrationStatus  # noqa: E402

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent
TESTS_DIR = HERE.parent
BROKER_URL = f"{REDIS_URL}/15"


def _client(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, str(HERE / "traced_client.py"), *args], env=env,
                          cwd=HERE, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "instrumented"])
def test_trace_across_client_and_restarted_workers(tmp_path: Path, instrumented: bool) -> None:
    require("redis")
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    queue = f"durable-trace-{uuid.uuid4().hex[:8]}"
    with database("postgresql", "durable_trace") as store_url:
        env = subprocess_env({"TRACE_BROKER_URL": BROKER_URL, "TRACE_STORE_URL": store_url,
                              "TRACE_QUEUE": queue, "TRACE_SPANS_DIR": str(spans_dir),
                              "TRACE_INSTRUMENT_CELERY": "1" if instrumented else "0"},
                             [HERE, TESTS_DIR])
        from celery import Celery

        watcher = Durable(Celery("watch", broker=BROKER_URL, set_as_current=False),
                          store_url=store_url)
        workers: list[WorkerProcess] = []

        def start(node: str) -> WorkerProcess:
            worker = WorkerProcess("traced_app:app", node, env=env, cwd=HERE,
                                   log_path=tmp_path / f"{node}.log")
            workers.append(worker)
            return worker

        def status(instance_id: str) -> OrchestrationStatus | None:
            state = watcher.client.get_orchestration_state(instance_id)
            return None if state is None else state.runtime_status

        try:
            first = start("trace-a")
            with logs_on_failure(workers):
                iid = _client(env, "schedule")
                wait_until("the sub-orchestration ends",
                           lambda: status(f"{iid}:charge") is OrchestrationStatus.COMPLETED,
                           time.monotonic() + 60, [first])
                stop_all([first])  # restart mid-orchestration: the next episode replays
                second = start("trace-b")
                _client(env, "approve", iid)
                wait_until("the orchestration ends",
                           lambda: status(iid) is OrchestrationStatus.COMPLETED,
                           time.monotonic() + 60, [second])
                stop_all([second])
                spans = span_files.read_spans(spans_dir)
                by_name = trace_checks.check_one_trace(spans, "POST /orders", iid)
        finally:
            stop_all(workers)
            watcher.store.dispose()
            delete_queue(BROKER_URL, queue)
    episodes = by_name["orchestration:ship_order"]
    assert len({s["pid"] for s in episodes}) >= 2, "episodes before and after the restart"
    (approve,) = [s for s in spans if s["name"] == "POST /approve"]
    assert approve["trace_id"] != episodes[0]["trace_id"]  # the raiser's own request trace
    raised = [s for s in spans if s["parent_id"] == approve["span_id"]]
    assert [(s["name"], s["kind"]) for s in raised] == [("orchestration_event:approved",
                                                         "PRODUCER")]
    runs = [s for s in spans if s["name"].startswith("run/")]
    if instrumented:
        # instrumentation-celery's spans of our activities nest in the orchestration's trace:
        # episode -> apply_async/<activity> -> run/<activity> -> activity:<activity>
        for span in by_name["activity:reserve"] + by_name["activity:price"]:
            run = next(s for s in spans if s["span_id"] == span["parent_id"])
            assert run["name"] == f"run/{span['name'].split(':', 1)[1]}"
            publish = next(s for s in spans if s["span_id"] == run["parent_id"])
            assert publish["name"].startswith("apply_async/")
            assert next(s for s in spans if s["span_id"] == publish["parent_id"])["name"] \
                == "orchestration:ship_order"
    else:
        assert not runs
        for span in by_name["activity:reserve"] + by_name["activity:price"]:
            assert next(s for s in spans if s["span_id"] == span["parent_id"])["name"] == \
                "orchestration:ship_order"
