"""A client process of the tracing tests (a web tier's stand-in): ``schedule`` starts a
``ship_order`` inside a ``POST /orders`` span and prints its instance id; ``approve ID`` raises
its ``approved`` event inside a ``POST /approve`` span."""

from __future__ import annotations

import sys

from opentelemetry import trace
from traced_app import configure_tracing, durable


def main(command: str, *args: str) -> None:
    configure_tracing("client")
    tracer = trace.get_tracer("web")
    if command == "schedule":
        with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER):
            print(durable.client.schedule_new_orchestration("ship_order",
                                                            input=["b", "aa", "ccc"]))
    else:
        with tracer.start_as_current_span("POST /approve", kind=trace.SpanKind.SERVER):
            durable.client.raise_orchestration_event(args[0], "approved", data=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
