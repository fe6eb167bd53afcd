"""Activity mocks of the test environment: a stand-in registered under the activity's name, so
that orchestrations call it through the real activity task (failures recorded, retries run)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery_durable.errors import DurableError
from celery_durable.registry import ActivityDef
from celery_durable.runtime.activity import ActivityContext, make_activity_task
from celery_durable.runtime.durable import Durable

#: "no value given" (``returns=None`` is a value)
UNSET: Any = object()


@dataclass(frozen=True)
class ActivityCall:
    """One call of a mocked activity: the context and input it received."""

    ctx: ActivityContext
    input: Any

    @property
    def attempt(self) -> int:
        return self.ctx.attempt


@dataclass
class ActivityMock:
    """What `DurableTestEnv.mock_activity` returns: the stand-in and the calls it received."""

    name: str
    returns: Any = None
    raises: BaseException | type[BaseException] | None = None
    side_effect: Callable[[ActivityContext, Any], Any] | None = None
    #: how many calls the mock answers; later ones run the real activity (None: all of them)
    times: int | None = None
    calls: list[ActivityCall] = field(default_factory=list)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def answers(self) -> bool:
        """Whether the mock answers the call just recorded (rather than the real activity)."""
        return self.times is None or len(self.calls) <= self.times

    @classmethod
    def make(cls, name: str, returns: Any = UNSET,
             raises: BaseException | type[BaseException] | None = None,
             side_effect: Callable[[ActivityContext, Any], Any] | None = None,
             times: int | None = None) -> ActivityMock:
        """A mock of activity ``name``; at most one of ``returns``, ``raises``, ``side_effect``."""
        given = [returns is not UNSET, raises is not None, side_effect is not None]
        if sum(given) > 1:
            raise ValueError("mock_activity takes at most one of returns=, raises= and "
                             "side_effect=")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)
                                  or times < 0):
            raise ValueError(f"times must be a non-negative int or None, got {times!r}")
        return cls(name, None if returns is UNSET else returns, raises, side_effect, times)

    def answer(self, ctx: ActivityContext, value: Any) -> Any:
        if self.side_effect is not None:
            return self.side_effect(ctx, value)
        if self.raises is not None:
            if isinstance(self.raises, type):
                raise self.raises(f"mocked failure of activity {self.name!r}")
            raise self.raises
        return self.returns


def install(durable: Durable, mock: ActivityMock, real: ActivityDef | None) -> None:
    """Register ``mock`` on ``durable`` in place of ``real`` (the activity's own definition, or
    None when this process does not register one)."""
    name = mock.name

    def stand_in(ctx: ActivityContext, value: Any = None) -> Any:
        mock.calls.append(ActivityCall(ctx, value))
        if mock.answers():
            return mock.answer(ctx, value)
        if real is None:
            raise DurableError(f"the mock of activity {name!r} answered its {mock.times} "
                               "call(s) and no real activity is registered under that name")
        return real.fn(ctx, value)

    registry = durable.registry
    if real is not None:  # the real activity's input annotation still applies
        stand_in = functools.wraps(real.fn)(stand_in)
        durable.app.tasks.unregister(name)
        make_activity_task(durable, ActivityDef(stand_in, name, dict(real.options)))
        return
    if name in registry.activities:  # an earlier mock of an unregistered name
        durable.app.tasks.unregister(name)
        del registry.activities[name]
    registry.add(ActivityDef(stand_in, name))
