"""Episode metrics from the workers, carried by Celery events as Flower carries task metrics.

Worker side: `EpisodeEventSender` observes the episodes of its process (an
`EpisodeRunner.observers` hook) and keeps a cumulative tally per orchestrator (count, total
seconds, histogram buckets). A thread of that process sends the whole tally as one
``durable-episodes`` event every few seconds (`SEND_INTERVAL`): nothing is sent per episode, so
the hot path pays a dictionary update, not a broker message.

Exporter side: `EpisodeEventReceiver` consumes those events (an exclusive queue bound to
Celery's event exchange with routing key ``durable.#``) and keeps each process' latest tally;
the totals are their sum. A process not heard from for `RETIRE_AFTER` seconds (it exited:
``max_tasks_per_child``, a restart) has its last tally folded into a retired total, so counters
never go down while the exporter runs and memory stays bounded.

Why events rather than prometheus_client's multiprocess mode: workers run on many hosts, and the
exporter reaches all of them through the broker they already share, without an HTTP port or a
shared directory on each; prefork children send their own events (each process' own tally),
so it works under prefork, threads, gevent or solo. A restarted exporter gets the cumulative
tallies back with the next event of each live process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from celery_durable.runtime.episode import EpisodeOutcome

logger = logging.getLogger(__name__)

EVENT = "durable-episodes"
#: upper bounds (seconds) of the episode duration histogram's buckets (+Inf implied)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: seconds between two events of a process (once it ran an episode)
SEND_INTERVAL = 5.0
#: a process not heard from for this long has exited: its tally is folded into the retired one
RETIRE_AFTER = 600.0


@dataclass
class Tally:
    """Episodes of one orchestrator: how many, their total seconds, and per bucket how many
    took at most its bound (not cumulative; the last one is +Inf)."""

    count: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.seconds += other.seconds
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    def cumulative(self) -> list[tuple[str, int]]:
        """The buckets as Prometheus has them: (upper bound, episodes at most that long)."""
        total, out = 0, []
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.buckets, strict=True):
            total += n
            out.append((bound, total))
        return out

    def to_json(self) -> list[Any]:
        return [self.count, self.seconds, list(self.buckets)]

    @classmethod
    def from_json(cls, value: Any) -> Tally:
        count, seconds, buckets = value
        if len(buckets) != len(BUCKETS) + 1:
            raise ValueError(f"expected {len(BUCKETS) + 1} buckets, got {len(buckets)}")
        return cls(int(count), float(seconds), [int(n) for n in buckets])


class EpisodeEventSender:
    """Observes this process' episodes and sends their tallies as Celery events (see the
    module's docstring). Fork-safe: a new process starts a tally and a thread of its own."""

    def __init__(self, app: Celery, interval: float = SEND_INTERVAL) -> None:
        self.app = app
        self.interval = interval
        self._pid = -1
        self._lock = threading.Lock()
        self._tallies: dict[str, Tally] = {}
        self._process = ""
        self._stop = threading.Event()

    def __call__(self, outcome: EpisodeOutcome) -> None:
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._tallies.setdefault(outcome.orchestrator, Tally()).add(outcome.seconds)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # (one held by the parent's thread at fork stays held)
        self._tallies = {}
        self._process = uuid.uuid4().hex
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="celery_durable-episode-events",
                         daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # a broker outage: the tally is cumulative, the next one catches up
                logger.warning("sending the episode metrics failed; retrying in %.0fs",
                               self.interval, exc_info=True)

    def snapshot(self) -> dict[str, Any] | None:
        """This process' tallies as event fields, or None before its first episode. Sent even
        when unchanged: the event is also the process' heartbeat (see `RETIRE_AFTER`)."""
        with self._lock:
            if not self._tallies:
                return None
            return {"process": self._process,
                    "tallies": {name: t.to_json() for name, t in self._tallies.items()}}

    def flush(self) -> None:
        """Send the tallies now (nothing before the first episode)."""
        fields = self.snapshot()
        if fields is None:
            return
        with self.app.events.default_dispatcher() as dispatcher:
            dispatcher.send(EVENT, **fields)

    def stop(self) -> None:
        self._stop.set()


class EpisodeEventReceiver:
    """Consumes ``durable-episodes`` events in a thread; `totals` sums the processes' tallies
    (see the module's docstring)."""

    def __init__(self, app: Celery, retire_after: float = RETIRE_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.retire_after = retire_after
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], tuple[float, dict[str, Tally]]] = {}
        self._retired: dict[str, Tally] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._receiver: Any = None
        self.connected = threading.Event()

    def start(self) -> EpisodeEventReceiver:
        self._thread = threading.Thread(target=self._run, name="celery_durable-metrics-events",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    receiver = self.app.events.Receiver(
                        conn, handlers={EVENT: self.on_event}, routing_key="durable.#")
                    self._receiver = receiver
                    if self._stop.is_set():
                        return
                    self.connected.set()
                    delay = 1.0
                    receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception:
                self.connected.clear()
                logger.warning("receiving episode metrics from the broker failed; retrying in "
                               "%.0fs", delay, exc_info=True)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Keep a process' latest tallies (an event of ``durable-episodes``)."""
        try:
            key = (str(event["hostname"]), str(event["process"]))
            tallies = {str(name): Tally.from_json(value)
                       for name, value in dict(event["tallies"]).items()}
        except (KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed %s event: %r", EVENT, event)
            return
        with self._lock:
            self._latest[key] = (self.clock(), tallies)

    def totals(self) -> tuple[dict[str, Tally], int]:
        """Per orchestrator, the episodes of every process heard from since the exporter
        started; and how many processes reported within `RETIRE_AFTER`."""
        now = self.clock()
        with self._lock:
            for key, (seen, tallies) in list(self._latest.items()):
                if now - seen > self.retire_after:
                    del self._latest[key]
                    for name, tally in tallies.items():
                        self._retired.setdefault(name, Tally()).merge(tally)
            totals: dict[str, Tally] = {}
            for source in [self._retired, *(t for _, t in self._latest.values())]:
                for name, tally in source.items():
                    totals.setdefault(name, Tally()).merge(tally)
            return totals, len(self._latest)
