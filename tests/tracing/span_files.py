"""OpenTelemetry SDK set-up for the tracing tests: each process writes its spans as JSON lines.

`configure(path)` installs a TracerProvider whose exporter appends every ended span to ``path``
(one JSON object a line, flushed at once: a worker killed later loses nothing written) and whose
sampler can be switched off (`enable`), so that the rest of a test session records nothing.
`read_spans(folder)` gathers the spans of every process that wrote into ``folder``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.context
    assert ctx is not None
    return {"name": span.name, "trace_id": _hex(ctx.trace_id, 32), "span_id": _hex(ctx.span_id, 16),
            "parent_id": _hex(span.parent.span_id, 16) if span.parent else None,
            "kind": span.kind.name, "attributes": dict(span.attributes or {}),
            "start": span.start_time, "end": span.end_time, "status": span.status.status_code.name,
            "links": [_hex(link.context.span_id, 16) for link in span.links],
            "pid": os.getpid()}


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span)) + "\n" for span in spans)
        with self._lock, open(self.path, "a") as out:
            out.write(lines)
            out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class SwitchableSampler(Sampler):
    """Samples everything while enabled, nothing otherwise."""

    enabled = True

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if self.enabled else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "SwitchableSampler"


SAMPLER = SwitchableSampler()


def configure(path: Path) -> TracerProvider:
    """Install the global TracerProvider (once per process) exporting to ``path``."""
    provider = TracerProvider(sampler=SAMPLER)
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)
    return provider


def read_spans(folder: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(folder.glob("*.jsonl")):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return spans
