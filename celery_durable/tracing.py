"""OpenTelemetry tracing: one orchestration, one trace (the optional extra ``otel``).

Hooks at the edges of the runtime, which call them and go on whatever they do: the client opens
``create_orchestration:<name>`` around ``schedule_new_orchestration`` (a child of the caller's
current span) and keeps its W3C trace context in the instance's ``ExecutionStarted`` event
(``data["trace"]``), so that every later episode, in any process and after any restart, finds it
in the store. Each episode is a span ``orchestration:<name>`` under it; the messages it sends
carry the episode span's ``traceparent`` header, under which the activity worker opens
``activity:<name>``; a sub-orchestration's start keeps a ``create_orchestration:<child>`` span of
its parent's episode; timers that fire and events that arrive become spans when the episode that
consumes them commits. Spans are made only from what an episode commits (new events, new
messages) and never from replayed history, so replays add none.

Without ``opentelemetry-api`` installed every hook does nothing; with the API but no SDK
configured, spans are non-recording and nothing is kept. The names and attributes follow
durabletask-python's (``orchestration:<name>``, ``activity:<name>``, ``durabletask.task.*``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from celery_durable.engine import history as h

logger = logging.getLogger(__name__)

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    OTEL_AVAILABLE = True
    _PROPAGATOR: Any = TraceContextTextMapPropagator()
except ImportError:  # the package runs without the ``otel`` extra; tracing is then inert
    OTEL_AVAILABLE = False

TRACER_NAME = "celery_durable"
#: key of the trace context in an ``ExecutionStarted`` event's data
TRACE_KEY = "trace"
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"

# attribute names as durabletask-python's (and .NET's Schema.cs)
ATTR_TYPE = "durabletask.type"
ATTR_NAME = "durabletask.task.name"
ATTR_VERSION = "durabletask.task.version"
ATTR_INSTANCE_ID = "durabletask.task.instance_id"
ATTR_TASK_ID = "durabletask.task.task_id"
ATTR_STATUS = "durabletask.task.status"
ATTR_FIRE_AT = "durabletask.fire_at"
ATTR_EVENT_TARGET_INSTANCE_ID = "durabletask.event.target_instance_id"
ATTR_EXECUTION_ID = "celery_durable.execution_id"
ATTR_ATTEMPT = "celery_durable.attempt"

Carrier = dict[str, str]


def span_name(kind: str, name: str, version: str | None = None) -> str:
    """``orchestration:order`` or, with a version, ``orchestration:order@(2)``."""
    return f"{kind}:{name}@({version})" if version else f"{kind}:{name}"


_TRACER: Any = None


def _tracer() -> Any:
    """This package's tracer, got once (before the SDK is configured it is the API's proxy,
    which follows the provider set later)."""
    global _TRACER
    if _TRACER is None:
        _TRACER = trace.get_tracer(TRACER_NAME)
    return _TRACER


def _carrier(span: Any = None) -> Carrier | None:
    """The W3C carrier of ``span`` (or of the current context); None when it is not valid."""
    if not OTEL_AVAILABLE:
        return None
    carrier: Carrier = {}
    ctx = None if span is None else trace.set_span_in_context(span)
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier if TRACEPARENT in carrier else None


def _context(carrier: Mapping[str, Any] | None) -> Any:
    """The OpenTelemetry context of a stored carrier, or None."""
    if not OTEL_AVAILABLE or not isinstance(carrier, Mapping):
        return None
    traceparent, tracestate = carrier.get(TRACEPARENT), carrier.get(TRACESTATE)
    if not isinstance(traceparent, str):
        return None
    return _extract(traceparent, tracestate if isinstance(tracestate, str) else None)


@functools.lru_cache(maxsize=1024)
def _extract(traceparent: str, tracestate: str | None) -> Any:
    """The (immutable) context of a W3C traceparent and tracestate, or None when invalid; an
    instance's episodes parse the same one again and again."""
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier[TRACESTATE] = tracestate
    ctx = _PROPAGATOR.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _current_links(parent: Any) -> list[Any]:
    """A link to the current span (what triggered this work), if there is one and it is not
    ``parent`` (a context) itself."""
    span_context = trace.get_current_span().get_span_context()
    parent_id = trace.get_current_span(parent).get_span_context().span_id
    return [Link(span_context)] if span_context.is_valid and \
        span_context.span_id != parent_id else []


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


def _record_error(span: Any, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


def keep_trace(start: h.HistoryEvent, carrier: Carrier | None) -> h.HistoryEvent:
    """Keep ``carrier`` in an ``ExecutionStarted`` event's data (returned, for chaining)."""
    if carrier and isinstance(start.data, dict):
        start.data[TRACE_KEY] = carrier
    return start


def stored_trace(started: h.HistoryEvent | None) -> Carrier | None:
    """The carrier an ``ExecutionStarted`` event kept, if any."""
    data = started.data if started is not None else None
    carrier = data.get(TRACE_KEY) if isinstance(data, dict) else None
    return carrier if isinstance(carrier, dict) else None


# -- the client ------------------------------------------------------------------------------------
@contextlib.contextmanager
def creating(name: str, instance_id: str, version: str | None) -> Iterator[Carrier | None]:
    """The span ``create_orchestration:<name>`` (a child of the caller's current span) around
    scheduling an instance; yields the carrier to keep with the instance (None: not traced)."""
    if not OTEL_AVAILABLE:
        yield None
        return
    attributes = {ATTR_TYPE: "orchestration", ATTR_NAME: name, ATTR_INSTANCE_ID: instance_id}
    if version:
        attributes[ATTR_VERSION] = version
    with _tracer().start_as_current_span(span_name("create_orchestration", name, version),
                                         kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield _carrier(span) if span.is_recording() else None


@contextlib.contextmanager
def raising(instance_id: str, event_name: str) -> Iterator[None]:
    """The span ``orchestration_event:<name>`` (PRODUCER) around raising an event, in the
    caller's trace (a web request's), when the caller is traced; the orchestration's own trace
    gets its span when an episode takes the event."""
    if not OTEL_AVAILABLE or not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    attributes = {ATTR_TYPE: "event", ATTR_NAME: event_name,
                  ATTR_EVENT_TARGET_INSTANCE_ID: instance_id}
    with _tracer().start_as_current_span(span_name("orchestration_event", event_name),
                                         kind=SpanKind.PRODUCER, attributes=attributes):
        yield


# -- publishing --------------------------------------------------------------------------------
@contextlib.contextmanager
def sending(headers: Mapping[str, Any] | None) -> Iterator[None]:
    """Make a message's own ``traceparent`` current while it is sent, so that a publish span
    (opentelemetry-instrumentation-celery's ``apply_async/<task>``) is its child, whoever sends
    it (the episode, or the sweeper re-publishing it later); the context is restored after."""
    ctx = _context(headers) if headers else None
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


# -- the activity worker -----------------------------------------------------------------------
def _header(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


#: the trace an execution's start kept, by (instance id, execution id), as looked up for
#: messages that came without one (None: it kept none); bounded, per process
_STARTS: OrderedDict[tuple[str, str], Carrier | None] = OrderedDict()
STARTS_CACHED = 1024


def _sdk_configured() -> bool:
    """Whether a tracer provider that may record is set (not the API's proxy or no-op)."""
    return not isinstance(trace.get_tracer_provider(),
                          (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def _kept_trace(key: tuple[str, str],
                find: Callable[[], h.HistoryEvent | None]) -> Carrier | None:
    """The carrier the execution's start kept, found once per process (`_STARTS`)."""
    if key in _STARTS:
        _STARTS.move_to_end(key)
        return _STARTS[key]
    try:
        carrier = stored_trace(find())
    except Exception:  # the store is unreachable: no span rather than no activity
        logger.warning("could not read the trace context of %s", key[0], exc_info=True)
        return None
    _STARTS[key] = carrier
    while len(_STARTS) > STARTS_CACHED:
        _STARTS.popitem(last=False)
    return carrier


@contextlib.contextmanager
def activity_span(request: Any, name: str, instance_id: str, task_id: int, attempt: int,
                  execution_id: str = "",
                  find_start: Callable[[], h.HistoryEvent | None] | None = None
                  ) -> Iterator[None]:
    """The span ``activity:<name>`` around an orchestrated activity's function. Its parent is
    the episode span that sent it (the message's ``traceparent``), or the current span when
    that continues the same trace (opentelemetry-instrumentation-celery's ``run/<task>``,
    itself under the episode span): never two parents, never a broken one. A message rebuilt
    from history (``recover``, the sweeper's re-dispatch) has no ``traceparent``: then the
    span's parent is the trace the execution's start kept, read once with ``find_start``."""
    if not OTEL_AVAILABLE:
        yield
        return
    sent = _context({TRACEPARENT: _header(request, TRACEPARENT),
                     TRACESTATE: _header(request, TRACESTATE)})
    if sent is None and find_start is not None and _sdk_configured():
        sent = _context(_kept_trace((instance_id, execution_id), find_start))
    current = trace.get_current_span().get_span_context()
    if current.is_valid and (sent is None or current.trace_id ==
                             trace.get_current_span(sent).get_span_context().trace_id):
        parent = None  # the current context: it is already in the orchestration's trace
    elif sent is not None:
        parent = sent
    else:  # an instance without a trace
        yield
        return
    attributes = {ATTR_TYPE: "activity", ATTR_NAME: name, ATTR_INSTANCE_ID: instance_id,
                  ATTR_TASK_ID: str(task_id), ATTR_ATTEMPT: attempt}
    with _tracer().start_as_current_span(span_name("activity", name), context=parent,
                                         kind=SpanKind.SERVER, attributes=attributes,
                                         record_exception=True, set_status_on_exception=True):
        yield


# -- the episode -------------------------------------------------------------------------------
class EpisodeTrace:
    """The spans of one episode: begun once the episode knows its instance's trace (from the
    ``ExecutionStarted`` it replayed or received), stamped into what it sends before the commit,
    ended after it. Does nothing when the instance has no trace or OpenTelemetry is absent."""

    def __init__(self) -> None:
        self._start_ns = time.time_ns()
        self._span: Any = None
        self._root: Any = None
        self._carrier: Carrier | None = None
        self._stored: Carrier | None = None
        self._name = ""
        self._instance_id = ""
        self._pending: list[Any] = []
        self._inbox: list[h.HistoryEvent] = []

    def begin(self, instance: Any, execution_id: str, started: h.HistoryEvent | None,
              commit: Any, inbox: Sequence[Any]) -> None:
        """Open the episode span (from when the episode began) and stamp the trace context
        into ``commit``: its messages' headers, its children's and its next execution's start.
        Called once the commit is planned, before it is written; ``inbox``: the rows (with
        their ``event`` as it arrived) the episode took."""
        if not OTEL_AVAILABLE:
            return
        try:
            self._begin(instance, execution_id, started, commit, inbox)
        except Exception:  # tracing never stops an episode
            logger.exception("tracing the episode of %s failed", instance.instance_id)
            self._span = None

    def _begin(self, instance: Any, execution_id: str, started: h.HistoryEvent | None,
               commit: Any, inbox: Sequence[Any]) -> None:
        self._stored = stored_trace(started)
        self._root = _context(self._stored)
        if self._root is None:
            return
        name, version = instance.name, instance.version
        attributes = {ATTR_TYPE: "orchestration", ATTR_NAME: name,
                      ATTR_INSTANCE_ID: instance.instance_id, ATTR_EXECUTION_ID: execution_id}
        if version:
            attributes[ATTR_VERSION] = version
        span = _tracer().start_span(span_name("orchestration", name, version), context=self._root,
                                    kind=SpanKind.SERVER, attributes=attributes,
                                    links=_current_links(self._root),
                                    start_time=self._start_ns)
        if not span.is_recording():
            return
        self._span, self._name, self._instance_id = span, name, instance.instance_id
        self._carrier = _carrier(span)
        self._inbox = [row.event for row in inbox]
        self._stamp(commit)

    def _stamp(self, commit: Any) -> None:
        for message in commit.outbox:
            options = message.setdefault("options", {})
            headers = options.get("headers")
            options["headers"] = {**(headers or {}), **(self._carrier or {})}
        for child, events in commit.children:
            create = _tracer().start_span(
                span_name("create_orchestration", child.name, child.version),
                context=trace.set_span_in_context(self._span), kind=SpanKind.PRODUCER,
                attributes={ATTR_TYPE: "orchestration", ATTR_NAME: child.name,
                            ATTR_INSTANCE_ID: child.instance_id,
                            ATTR_TASK_ID: str(child.parent_task_id)})
            self._pending.append(create)  # ended with the commit: not exported if it fails
            for event in events:
                if event.kind == h.EXECUTION_STARTED:
                    keep_trace(event, _carrier(create))
        for instance_id, item in commit.notify:  # continue-as-new: the next execution's start
            if instance_id == self._instance_id and item.event.kind == h.EXECUTION_STARTED:
                keep_trace(item.event, self._stored)

    def failed(self, exc: BaseException) -> None:
        """The episode raised before committing: its span ends with the error; the spans of
        what it would have committed are dropped."""
        if self._span is not None:
            _record_error(self._span, exc)
            self._span.end()
            self._span = None

    def end(self, commit: Any) -> None:
        """The episode committed (and published): end its spans, and make spans of the timers
        and events it consumed."""
        span, self._span = self._span, None
        if span is None:
            return
        try:
            for create in self._pending:
                create.end()
            self._consumed_spans(commit.new_events)
            status = commit.status_value()
            span.set_attribute(ATTR_STATUS, status)
            if status == "FAILED":
                failure = commit.failure_dict() or {}
                span.set_status(StatusCode.ERROR, str(failure.get("message", "failed")))
        except Exception:  # the episode has committed: tracing must not make it look failed
            logger.exception("tracing the episode of %s failed", self._instance_id)
        finally:
            span.end()

    def _consumed_spans(self, new_events: Sequence[h.HistoryEvent]) -> None:
        """``orchestration:<name>:timer`` for each timer that fired, from when it was due to when
        the episode took it; ``orchestration_event:<name>`` for each event raised, from when it
        was raised to when the episode took it (new events only: replays make none)."""
        tracer = _tracer()
        end_ns = time.time_ns()
        waiting = list(self._inbox)
        for event in new_events:
            if event.kind not in (h.TIMER_FIRED, h.EVENT_RAISED):
                continue
            arrived = next((e for e in waiting if e.kind == event.kind and
                            e.task_id == event.task_id and e.name == event.name), event)
            if arrived in waiting:
                waiting.remove(arrived)
            attributes: dict[str, Any] = {ATTR_INSTANCE_ID: self._instance_id}
            if event.kind == h.TIMER_FIRED:
                fire_at = (event.data or {}).get("fire_at") if isinstance(event.data, dict) \
                    else None
                start = _ns(datetime.fromisoformat(fire_at)) if fire_at else _ns(arrived.timestamp)
                name = f"orchestration:{self._name}:timer"
                attributes.update({ATTR_TYPE: "timer", ATTR_NAME: self._name,
                                   ATTR_TASK_ID: str(event.task_id), ATTR_FIRE_AT: fire_at or ""})
            else:
                start = _ns(arrived.timestamp)
                name = span_name("orchestration_event", event.name or "")
                attributes.update({ATTR_TYPE: "event", ATTR_NAME: event.name or ""})
            tracer.start_span(name, context=self._root, kind=SpanKind.CONSUMER,
                              attributes=attributes, start_time=min(start, end_ns)
                              ).end(end_time=end_ns)
