"""The test environment's clock, and the episode runner that reads it.

The engine stays a pure function of the time it is given: `EpisodeRunner.run` takes ``now``, and
this runner passes the test clock's time instead of the wall clock's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from celery_durable.engine.history import utc
from celery_durable.runtime.durable import Durable
from celery_durable.runtime.episode import EpisodeRunner
from celery_durable.store import InboxItem, WakeupClaim


class TestClock:
    """The environment's time: it stands still until the environment moves it forward."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        self._now = utc(start) if start is not None else datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def move_to(self, when: datetime) -> None:
        """Move forward to ``when`` (never backwards)."""
        self._now = max(self._now, utc(when))


class ClockedRunner(EpisodeRunner):
    """An `EpisodeRunner` whose episodes run at the test clock's time unless told otherwise."""

    def __init__(self, durable: Durable, clock: TestClock) -> None:
        super().__init__(durable)
        self.clock = clock

    def run(self, instance_id: str, extra: Sequence[InboxItem] = (), *, wait: bool = False,
            now: datetime | None = None, rejections: int = 0,
            claim: WakeupClaim | None = None) -> bool:
        return super().run(instance_id, extra, wait=wait, now=now or self.clock.now(),
                           rejections=rejections, claim=claim)


