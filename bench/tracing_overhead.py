"""What tracing costs an orchestration step: a sequential orchestration of N no-op activities in
`DurableTestEnv` (the real engine, store and episode runner in one process, SQLite, no broker),
with the OpenTelemetry SDK recording every span (an exporter that drops them) against the same
run with the sampler off (the API and SDK installed, nothing recorded). Runs alternate; the
figure is the median CPU milliseconds (``time.process_time``: everything runs in this process,
and CPU time is steadier than wall time on a shared machine) per step of each side.

Run: ``PYTHONPATH=. .venv/bin/python bench/tracing_overhead.py [N] [REPETITIONS]``
(default 300 steps, 5 repetitions each).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult

from celery_durable import activity, orchestrator
from celery_durable.testing import DurableTestEnv


class Dropping(SpanExporter):
    spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        Dropping.spans += len(spans)
        return SpanExportResult.SUCCESS


class Switch(Sampler):
    on = False

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if self.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Switch"


@activity(name="bench.trace_noop")
def noop(ctx: Any, i: int) -> int:
    return i


@orchestrator(name="bench.trace_seq")
def seq(ctx: Any, n: int) -> int:
    for i in range(n):
        yield ctx.call_activity(noop, input=i)
    return n


def run(env: DurableTestEnv, n: int) -> float:
    tracer = trace.get_tracer("bench")
    start = time.process_time()
    with tracer.start_as_current_span("bench request"):
        iid = env.schedule_new_orchestration(seq, input=n)
    env.wait_for_orchestration_completion(iid)
    return (time.process_time() - start) * 1000 / n


def main(n: int = 300, repetitions: int = 5) -> None:
    switch = Switch()
    provider = TracerProvider(sampler=switch)
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    trace.set_tracer_provider(provider)
    figures: dict[bool, list[float]] = {False: [], True: []}
    with DurableTestEnv() as env:
        run(env, 20)  # warm up
        for _ in range(repetitions):
            for on in (False, True):
                switch.on = on
                figures[on].append(run(env, n))
    off, on = statistics.median(figures[False]), statistics.median(figures[True])
    print(f"{n} steps x {repetitions}: {off:.3f} CPU ms/step untraced, {on:.3f} CPU ms/step traced "
          f"(+{on - off:.3f} ms, x{on / off:.2f}); {Dropping.spans} spans recorded")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
