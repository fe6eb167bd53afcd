"""The app of the tracing tests' ``celery worker`` subprocesses and client script.

Environment: TRACE_BROKER_URL, TRACE_STORE_URL, TRACE_QUEUE, TRACE_SPANS_DIR (each process
writes its spans to ``<dir>/<role>-<pid>.jsonl``) and TRACE_INSTRUMENT_CELERY=1 to also run
opentelemetry-instrumentation-celery. The SDK is configured in each pool process after the fork
(``worker_process_init``), as docs/tracing.md recommends for prefork.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import span_files  # noqa: E402
import traced_workflow  # noqa: E402
from celery import Celery  # noqa: E402
from celery.signals import worker_process_init  # noqa: E402

from celery_durable import Durable  # noqa: E402


def configure_tracing(role: str) -> None:
    span_files.configure(Path(os.environ["TRACE_SPANS_DIR"]) / f"{role}-{os.getpid()}.jsonl")
    if os.environ.get("TRACE_INSTRUMENT_CELERY") == "1":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


app = Celery("traced", broker=os.environ["TRACE_BROKER_URL"], set_as_current=False)
app.conf.update(task_default_queue=os.environ["TRACE_QUEUE"], task_acks_late=True,
                worker_prefetch_multiplier=1, result_backend=None, task_ignore_result=True,
                broker_connection_retry_on_startup=True, durable_sweep_interval=1.0)
durable = Durable(app, store_url=os.environ["TRACE_STORE_URL"])
traced_workflow.register(durable)


@worker_process_init.connect
def _trace_pool_process(**_: Any) -> None:
    configure_tracing("worker")
