"""The schedule methods of `DurableClient`: recurring orchestrations without celery beat.

A schedule is a row in the store; every worker's sweeper fires the ticks that are due (see
`celery_durable.runtime.schedules`), so there is no beat process to keep single, and a tick
starts one instance whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from celery_durable.engine.context import name_of
from celery_durable.errors import (
    InvalidScheduleError,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
)
from celery_durable.ids import check_instance_id, check_orchestrator_name
from celery_durable.payload import to_json
from celery_durable.runtime import schedules as firing
from celery_durable.schedule_spec import OVERLAP_POLICIES, ScheduleSpec
from celery_durable.store.schedules import ScheduleRecord, with_next_run

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

#: longest schedule id (the ids of its instances add the tick's time to it)
MAX_SCHEDULE_ID = 200


@dataclass(frozen=True)
class Schedule:
    """A durable schedule as stored: its definition, its next and last runs and its counters
    (``runs`` started, ticks ``missed`` beyond the catch-up window, ticks skipped because a run
    was still going: ``overlapped``)."""

    schedule_id: str
    orchestrator: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    paused: bool
    input: Any = None
    interval: timedelta | None = None
    cron: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    overlap: str = "skip"
    catchup_window: timedelta | None = None
    last_instance_id: str | None = None
    buffered_at: datetime | None = None
    runs: int = 0
    missed: int = 0
    overlapped: int = 0
    created_at: datetime | None = None

    @property
    def every(self) -> str:
        """How often it ticks, in words: ``every 30s`` or ``cron <expression>``."""
        if self.interval is not None:
            return f"every {self.interval.total_seconds():g}s"
        return f"cron {self.cron}"

    def to_json(self) -> dict[str, Any]:
        """The schedule as JSON (what the CLI's ``--json`` prints and the dashboard serves)."""
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        def seconds(value: timedelta | None) -> float | None:
            return None if value is None else value.total_seconds()

        return {"schedule_id": self.schedule_id, "orchestrator": self.orchestrator,
                "input": self.input, "every": self.every,
                "interval_seconds": seconds(self.interval), "cron": self.cron,
                "start_at": iso(self.start_at), "end_at": iso(self.end_at),
                "overlap": self.overlap,
                "catchup_window_seconds": seconds(self.catchup_window), "paused": self.paused,
                "next_run_at": iso(self.next_run_at), "last_run_at": iso(self.last_run_at),
                "last_instance_id": self.last_instance_id, "runs": self.runs,
                "missed": self.missed, "overlapped": self.overlapped}

    @classmethod
    def from_record(cls, r: ScheduleRecord) -> Schedule:
        return cls(r.schedule_id, r.orchestrator, r.next_run_at, r.last_run_at, r.paused,
                   r.input, r.interval, r.cron, r.start_at, r.end_at, r.overlap,
                   r.catchup_window, r.last_instance_id, r.buffered_at, r.runs, r.missed,
                   r.overlapped, r.created_at)


def _not_found(schedule_id: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(f"no schedule has id {schedule_id!r}; list them with "
                                 "client.list_schedules() or `celery -A proj durable schedules`")


def _window(value: timedelta | float | None) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidScheduleError(
                f"catchup_window must be a timedelta or seconds, got {value!r}")
        value = timedelta(seconds=value)
    if value <= timedelta(0):
        raise InvalidScheduleError(f"catchup_window must be positive, got {value}")
    return value


class ScheduleMethods:
    """Mixed into `DurableClient`: create, read, pause, resume, trigger and delete schedules."""

    durable: Durable

    def _schedule_clock(self) -> datetime:
        """The time schedules are created, resumed and triggered at (the test environment's
        clock there)."""
        return datetime.now(timezone.utc)

    def create_schedule(self, schedule_id: str, orchestrator: Any, *, input: Any = None,
                        interval: timedelta | float | None = None, cron: str | None = None,
                        start_at: datetime | None = None, end_at: datetime | None = None,
                        overlap: str = "skip",
                        catchup_window: timedelta | float | None = None) -> Schedule:
        """Create a schedule that starts ``orchestrator`` (a decorated function or a name) with
        ``input`` every ``interval`` (a timedelta or seconds, at least 1 s; ticks fall at
        ``start_at + k * interval``, else on multiples of it since the epoch) or at the times
        of ``cron`` (five fields, UTC unless it starts with ``CRON_TZ=<zone>``), from
        ``start_at`` until ``end_at``.

        ``overlap``: when a tick comes while the previous run still runs, "skip" it, "allow" a
        second run, or "buffer_one" (start it when the previous run ends; one at most).
        ``catchup_window``: ticks missed while no worker ran are started once each if younger
        than this, else skipped (counted in ``missed``); without it only the latest missed tick
        runs, and ticks less than a minute late (a sweep that came late) run as usual.
        Creating again with the same definition returns the stored schedule; with another
        one raises `ScheduleAlreadyExistsError` (delete it first).
        """
        schedule_id = check_instance_id(schedule_id)
        if len(schedule_id) > MAX_SCHEDULE_ID or "@" in schedule_id:
            raise InvalidScheduleError(
                f"schedule id must be at most {MAX_SCHEDULE_ID} characters without '@' (its "
                f"runs are named <schedule id>@<tick>), got {schedule_id!r}")
        name = check_orchestrator_name(orchestrator if isinstance(orchestrator, str)
                                       else name_of(orchestrator, "orchestrator"))
        if overlap not in OVERLAP_POLICIES:
            raise InvalidScheduleError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, "
                                       f"got {overlap!r}")
        spec = ScheduleSpec.make(interval, cron, start_at, end_at)
        data = to_json(input, f"input of schedule {schedule_id!r}",
                       limit=self.durable.settings.max_payload_bytes)
        now = self._schedule_clock()
        record = with_next_run(ScheduleRecord(
            schedule_id, name, data, spec.interval, cron, spec.start_at, spec.end_at, overlap,
            _window(catchup_window), created_at=now, updated_at=now), now)
        if record.next_run_at is None:
            raise InvalidScheduleError(f"schedule {schedule_id!r} would never run: end_at "
                                       f"{spec.end_at} leaves no tick after now ({now})")
        stored = self.durable.store.schedules.create(record)
        if stored.definition() != record.definition():
            raise ScheduleAlreadyExistsError(
                f"schedule {schedule_id!r} exists with another definition ({stored.orchestrator}, "
                f"interval={stored.interval}, cron={stored.cron!r}, overlap={stored.overlap}); "
                "delete it first (delete_schedule) or choose another id")
        return Schedule.from_record(stored)

    def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""
        record = self.durable.store.schedules.get(schedule_id)
        return None if record is None else Schedule.from_record(record)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, ordered by id."""
        return [Schedule.from_record(r) for r in self.durable.store.schedules.list()]

    def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stop firing the schedule's ticks (runs already started go on)."""
        return self._set_paused(schedule_id, True)

    def resume_schedule(self, schedule_id: str) -> Schedule:
        """Fire again from the next tick on (ticks that fell while paused are not run)."""
        return self._set_paused(schedule_id, False)

    def _set_paused(self, schedule_id: str, paused: bool) -> Schedule:
        record = self.durable.store.schedules.set_paused(schedule_id, paused,
                                                         self._schedule_clock())
        if record is None:
            raise _not_found(schedule_id)
        return Schedule.from_record(record)

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule; the instances it started stay."""
        if not self.durable.store.schedules.delete(schedule_id):
            raise _not_found(schedule_id)

    def trigger_schedule(self, schedule_id: str) -> str:
        """Start one run now (whatever the overlap policy, paused or not); returns its
        instance id (``<schedule id>@<now>-trigger``)."""
        now = self._schedule_clock()
        fired = self.durable.store.schedules.trigger(schedule_id, now,
                                                     firing.starter(self.durable, now))
        if fired is None:
            raise _not_found(schedule_id)
        firing.wake(self.durable, [fired])
        return fired.instance_id
