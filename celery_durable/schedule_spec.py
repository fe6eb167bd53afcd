"""When a schedule's ticks fall, and what one sweep does with the ticks that are due: pure (the
time is given, nothing is read or written), so that every rule here is tested alone.

A tick is a point in time the schedule names: ``start_at + k * interval`` (``start_at`` defaults
to the Unix epoch, so that "every 10 minutes" ticks at :00, :10, ...) or a time its cron
expression names, never before ``start_at`` nor after ``end_at``. Each tick starts at most one
instance, whose id is `tick_instance_id` (the schedule's id and the tick): a tick can never be
started twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from celery_durable.cron import CronExpression
from celery_durable.errors import InvalidScheduleError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
OVERLAP_POLICIES = ("skip", "allow", "buffer_one")
#: without a catch-up window, ticks this late still run (a sweep may come late: a busy worker)
DEFAULT_LATENESS = timedelta(minutes=1)
#: most ticks one sweep starts for one schedule (a long catch-up continues at the next sweep)
MAX_STARTS = 100
#: most ticks counted one by one when a cron schedule skips a long outage
_MAX_COUNTED = 100_000
_US = timedelta(microseconds=1)


def tick_instance_id(schedule_id: str, tick: datetime) -> str:
    """The id of the instance a tick starts: ``<schedule id>@<tick in UTC, ISO 8601>``."""
    tick = tick.astimezone(timezone.utc)
    stamp = tick.strftime("%Y-%m-%dT%H:%M:%S")
    if tick.microsecond:
        stamp += f".{tick.microsecond:06d}"
    return f"{schedule_id}@{stamp}Z"


@dataclass(frozen=True)
class ScheduleSpec:
    """The ticks of a schedule: every ``interval``, or at the times ``cron`` names."""

    interval: timedelta | None = None
    cron: CronExpression | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None

    @classmethod
    def make(cls, interval: timedelta | float | None, cron: str | None,
             start_at: datetime | None, end_at: datetime | None) -> ScheduleSpec:
        """A checked spec; `InvalidScheduleError` says what is wrong."""
        if (interval is None) == (cron is None):
            raise InvalidScheduleError(
                "a schedule needs exactly one of interval= (a timedelta or seconds) and cron= "
                f"(a five-field cron expression), got interval={interval!r}, cron={cron!r}")
        if interval is not None and not isinstance(interval, timedelta):
            if isinstance(interval, bool) or not isinstance(interval, int | float):
                raise InvalidScheduleError(
                    f"interval must be a timedelta or a number of seconds, got {interval!r}")
            interval = timedelta(seconds=interval)
        if interval is not None and interval < timedelta(seconds=1):
            raise InvalidScheduleError(
                f"interval must be at least one second, got {interval}: ticks are fired by the "
                "workers' sweepers (durable_sweep_interval), not by a timer per tick")
        for name, value in (("start_at", start_at), ("end_at", end_at)):
            if value is not None and not isinstance(value, datetime):
                raise InvalidScheduleError(f"{name} must be a datetime, got {value!r}")
        start = _aware(start_at)
        end = _aware(end_at)
        if start is not None and end is not None and end < start:
            raise InvalidScheduleError(f"end_at {end} is before start_at {start}")
        return cls(interval, CronExpression.parse(cron) if cron is not None else None, start,
                   end)

    def first_at_or_after(self, when: datetime) -> datetime | None:
        """The first tick at or after ``when``; None when the schedule has ended by then."""
        if self.start_at is not None and when < self.start_at:
            when = self.start_at
        if self.interval is not None:
            anchor = self.start_at or EPOCH
            step = self.interval // _US
            k = -(-((when - anchor) // _US) // step)  # ceiling division
            tick: datetime | None = anchor + max(k, 0) * self.interval
        else:
            assert self.cron is not None
            tick = self.cron.next_after(when - _US)
        return tick if tick is not None and (self.end_at is None or tick <= self.end_at) else None

    def next_after(self, tick: datetime) -> datetime | None:
        """The first tick strictly after ``tick``; None when the schedule has ended."""
        return self.first_at_or_after(tick + _US)

    def count(self, first: datetime, until: datetime | None) -> int:
        """How many ticks lie in [first, until) (``first`` a tick; until None: no end)."""
        if until is None and self.end_at is not None:
            until = self.end_at + _US
        if until is None or until <= first:
            return 0
        if self.interval is not None:
            return -(-((until - first) // _US) // (self.interval // _US))
        n, at = 0, first
        while n < _MAX_COUNTED:
            n, later = n + 1, self.next_after(at)
            if later is None or later >= until:
                break
            at = later
        return n

    def last_at_or_before(self, first: datetime, when: datetime) -> datetime:
        """The last tick at or before ``when``, from the tick ``first`` (<= ``when``) on."""
        if self.interval is not None:
            anchor = self.start_at or EPOCH
            k = (when - anchor) // self.interval
            last = anchor + k * self.interval
            if self.end_at is not None and last > self.end_at:
                last = anchor + ((self.end_at - anchor) // self.interval) * self.interval
            return max(last, first)
        tick, n = first, 0
        while n < _MAX_COUNTED:
            later = self.next_after(tick)
            if later is None or later > when:
                break
            tick, n = later, n + 1
        return tick


@dataclass
class FirePlan:
    """What one sweep does with a schedule: ticks to start (in order), ticks missed (older than
    the catch-up window) and ticks skipped because a run was still going (``overlapped``), the
    tick kept for later (``buffer_one``) and the next tick due."""

    starts: list[datetime] = field(default_factory=list)
    missed: int = 0
    overlapped: int = 0
    buffered_at: datetime | None = None
    next_run_at: datetime | None = None


def plan_fire(spec: ScheduleSpec, overlap: str, catchup_window: timedelta | None,
              next_run_at: datetime | None, buffered_at: datetime | None,
              previous_running: bool, now: datetime) -> FirePlan:
    """Decide what the ticks due by ``now`` become.

    - A tick older than ``now - catchup_window`` is missed (counted, not started). Without a
      window, ticks up to `DEFAULT_LATENESS` late run, and of older ones only the latest (after
      an outage, one run stands for the ticks missed).
    - ``overlap``: while the previous run is still going (``previous_running``, or a run this plan
      starts), "skip" skips the tick (counted), "allow" starts it anyway, "buffer_one" keeps it
      and starts it once the previous run has ended (one tick at most; more are skipped).
    """
    plan = FirePlan(buffered_at=buffered_at, next_run_at=next_run_at)
    running = previous_running
    if plan.buffered_at is not None and not running:
        plan.starts.append(plan.buffered_at)
        plan.buffered_at, running = None, True
    tick = next_run_at
    if tick is None or tick > now:
        return plan
    cutoff = (min(now - DEFAULT_LATENESS, spec.last_at_or_before(tick, now))
              if catchup_window is None else now - catchup_window)
    if tick < cutoff:
        first = spec.first_at_or_after(cutoff)
        plan.missed = spec.count(tick, first)
        tick = first
    while tick is not None and tick <= now and len(plan.starts) < MAX_STARTS:
        if overlap == "allow" or not running:
            plan.starts.append(tick)
            running = True
        elif overlap == "buffer_one" and plan.buffered_at is None:
            plan.buffered_at = tick
        else:
            plan.overlapped += 1
        tick = spec.next_after(tick)
    plan.next_run_at = tick
    return plan


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
