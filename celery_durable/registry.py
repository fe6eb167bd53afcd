"""Registration of orchestrators and activities: the ``@orchestrator`` / ``@activity`` decorators.

Module-level decorators register a definition in a process-wide list that every ``Durable``
object picks up (like Celery's ``shared_task``); ``@durable.orchestrator`` and
``@durable.activity`` register on that one ``Durable`` only. The decorated name stays usable as
the plain function's stand-in: ``ctx.call_activity(charge)``, ``charge.delay(order)``.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, overload

from celery_durable.errors import UnknownNameError

_NAME_LIMIT = 256


@dataclass
class OrchestratorDef:
    """A registered orchestrator function."""

    fn: Callable[..., Any]
    name: str
    version: str | None = None
    queue: str | None = None
    #: at most this many instances RUNNING at once across all workers (runtime/limits.py)
    concurrency_limit: int | None = None


@dataclass
class ActivityDef:
    """A registered activity function and the Celery task options it was declared with."""

    fn: Callable[..., Any]
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def queue(self) -> str | None:
        return self.options.get("queue")

    @property
    def heartbeat_timeout(self) -> timedelta | None:
        """How long the activity may go without a heartbeat before it counts as lost."""
        value = self.options.get("heartbeat_timeout")
        if value is None or isinstance(value, timedelta):
            return value
        return timedelta(seconds=float(value))


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > _NAME_LIMIT:
        raise ValueError(f"{what} name must be a non-empty string of at most {_NAME_LIMIT} "
                         f"characters, got {name!r}")
    return name


class Registry:
    """Orchestrators and activities known to one ``Durable`` (or to every one, when global)."""

    def __init__(self) -> None:
        self.orchestrators: dict[str, OrchestratorDef] = {}
        self.activities: dict[str, ActivityDef] = {}
        self._listeners: list[Callable[[OrchestratorDef | ActivityDef], None]] = []

    def add(self, definition: OrchestratorDef | ActivityDef) -> None:
        table: dict[str, Any] = (self.orchestrators if isinstance(definition, OrchestratorDef)
                                 else self.activities)
        existing = table.get(definition.name)
        if existing is not None and existing.fn is not definition.fn and \
                _qualname(existing.fn) != _qualname(definition.fn):
            kind = "orchestrator" if isinstance(definition, OrchestratorDef) else "activity"
            why = (" (an orchestrator is named after its function alone, as in durabletask: "
                   "the name is stored with every instance and used to schedule it by name)"
                   if kind == "orchestrator" else "")
            raise ValueError(f"two {kind} functions are registered as {definition.name!r}: "
                             f"{_qualname(existing.fn)} and {_qualname(definition.fn)}{why}; "
                             f"give one of them a name of its own: @{kind}(name="
                             f"\"{_suggested_name(definition.fn)}\")")
        table[definition.name] = definition
        for listener in self._listeners:
            listener(definition)

    def subscribe(self, listener: Callable[[OrchestratorDef | ActivityDef], None]) -> None:
        """Call ``listener`` for every definition registered now and later."""
        self._listeners.append(listener)
        definitions: list[OrchestratorDef | ActivityDef] = [*self.orchestrators.values()]
        definitions += self.activities.values()
        for definition in definitions:
            listener(definition)

    def orchestrator(self, name: str) -> OrchestratorDef:
        return _lookup(self.orchestrators, name, "orchestrator")

    def activity(self, name: str) -> ActivityDef:
        return _lookup(self.activities, name, "activity")


D = TypeVar("D", OrchestratorDef, ActivityDef)


def _lookup(table: dict[str, D], name: str, kind: str) -> D:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownNameError(f"no {kind} is registered as {name!r} (registered: {known}); "
                               f"decorate it with @{kind} and import its module in the "
                               "worker") from None


def _suggested_name(fn: Callable[..., Any]) -> str:
    """A name unlikely to collide: the function's, after the last part of its package that is
    not a generic module name (``shipping.orchestrators.process`` gives ``shipping.process``)."""
    parts = [p for p in str(getattr(fn, "__module__", "")).split(".")
             if p not in {"orchestrators", "workflows", "tasks", "activities", "__main__", ""}]
    prefix = parts[-1] if parts else "app"
    return f"{prefix}.{fn.__name__}"


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


#: Definitions made with the module-level decorators; every Durable subscribes to it.
GLOBAL = Registry()


class Orchestrator:
    """What ``@orchestrator`` returns: the function, callable as before, tagged with its name."""

    def __init__(self, definition: OrchestratorDef) -> None:
        self.definition = definition
        self.__durable_name__ = definition.name
        self.__name__ = definition.name
        self.__doc__ = definition.fn.__doc__
        self.__wrapped__ = definition.fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.definition.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<orchestrator {self.definition.name!r}>"


class Activity:
    """What ``@activity`` returns: the function, and the Celery task it runs as.

    ``charge.delay(order)`` / ``charge.apply_async(...)`` send it as a plain Celery task through
    the current app; calling ``charge(ctx, order)`` calls the function directly.
    """

    def __init__(self, definition: ActivityDef) -> None:
        self.definition = definition
        self.__durable_name__ = definition.name
        self.__name__ = definition.name
        self.__doc__ = definition.fn.__doc__
        self.__wrapped__ = definition.fn

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def task(self) -> Any:
        """The Celery task registered for this activity on the current app."""
        from celery import current_app

        return current_app.tasks[self.definition.name]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.definition.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.task.delay(*args, **kwargs)

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        return self.task.apply_async(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Any:
        return self.task.s(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<activity {self.definition.name!r}>"


def _default_name(fn: Callable[..., Any]) -> str:
    """``module.qualname``, as Celery names tasks. In a script run as ``python shop.py`` the
    module is ``__main__``, while the worker imports it as ``shop``: use the name the worker sees."""
    module = fn.__module__
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
        else:
            path = str(getattr(main, "__file__", None) or "")
            if path:
                module = os.path.splitext(os.path.basename(path))[0]
    return f"{module}.{fn.__qualname__}"


def _check_function(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"@{what} decorates a function, got {fn!r}")
    if what == "orchestrator" and not (inspect.isgeneratorfunction(fn) or inspect.isfunction(fn)):
        raise TypeError(f"@orchestrator decorates a (generator) function, got {fn!r}")


def make_orchestrator(registry: Registry, fn: Callable[..., Any] | None = None, *,
                      name: str | None = None, version: str | None = None,
                      queue: str | None = None, concurrency_limit: int | None = None) -> Any:
    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or not isinstance(
            concurrency_limit, int) or concurrency_limit < 1):
        raise ValueError(f"concurrency_limit must be a positive int (instances RUNNING at once "
                         f"across all workers) or None, got {concurrency_limit!r}")

    def decorate(func: Callable[..., Any]) -> Orchestrator:
        _check_function(func, "orchestrator")
        definition = OrchestratorDef(func, _check_name(name or func.__name__, "orchestrator"),
                                     version, queue, concurrency_limit)
        registry.add(definition)
        return Orchestrator(definition)

    return decorate(fn) if fn is not None else decorate


def make_activity(registry: Registry, fn: Callable[..., Any] | None = None, *,
                  name: str | None = None, **options: Any) -> Any:
    timeout = options.get("heartbeat_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (timedelta, int, float)) or _seconds(timeout) <= 0):
        raise ValueError(f"heartbeat_timeout must be a positive timedelta (or seconds), got "
                         f"{timeout!r}")

    def decorate(func: Callable[..., Any]) -> Activity:
        _check_function(func, "activity")
        definition = ActivityDef(func, _check_name(name or _default_name(func), "activity"),
                                 options)
        registry.add(definition)
        return Activity(definition)

    return decorate(fn) if fn is not None else decorate


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@overload
def orchestrator(fn: Callable[..., Any]) -> Orchestrator: ...
@overload
def orchestrator(*, name: str | None = None, version: str | None = None,
                 queue: str | None = None, concurrency_limit: int | None = None
                 ) -> Callable[[Callable[..., Any]], Orchestrator]: ...
def orchestrator(fn: Callable[..., Any] | None = None, *, name: str | None = None,
                 version: str | None = None, queue: str | None = None,
                 concurrency_limit: int | None = None) -> Any:
    """Declare an orchestrator: ``@orchestrator`` or ``@orchestrator(name=, version=, queue=,
    concurrency_limit=)``; ``concurrency_limit=N``: at most N instances RUNNING at once across
    all workers, the others wait PENDING in the order they were started."""
    return make_orchestrator(GLOBAL, fn, name=name, version=version, queue=queue,
                             concurrency_limit=concurrency_limit)


@overload
def activity(fn: Callable[..., Any]) -> Activity: ...
@overload
def activity(*, name: str | None = None,
             **options: Any) -> Callable[[Callable[..., Any]], Activity]: ...
def activity(fn: Callable[..., Any] | None = None, *, name: str | None = None,
             **options: Any) -> Any:
    """Declare an activity: ``@activity`` or ``@activity(name=, queue=, rate_limit=, ...)``.

    Keyword options other than ``name`` and ``heartbeat_timeout`` (a timedelta: the activity
    counts as lost, and is sent again, when its ``ctx.heartbeat()`` calls stop for longer) are
    Celery task options (queue, rate_limit, time_limit, soft_time_limit, priority, ...).
    """
    return make_activity(GLOBAL, fn, name=name, **options)
