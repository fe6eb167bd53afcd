"""The schedules table family (``durable_schedules``): recurring orchestrations and their ticks.

`ScheduleStore` (``store.schedules``) has one transaction per method. `ScheduleStore.fire_due`
is what every worker's sweeper runs: it locks the due schedules (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL and MySQL/MariaDB, the write lock of ``BEGIN IMMEDIATE`` on SQLite), creates the
instances their ticks start and advances them, in one transaction. Two sweepers never fire the
same schedule at once (the row lock), a tick advanced past is never seen again (the same commit
that created its instance moved ``next_run_at``), and the instance id names the tick
(`tick_instance_id`), so that even a tick somehow considered twice finds its instance there.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from celery_durable.engine.history import HistoryEvent
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.payload import dumps, loads
from celery_durable.schedule_spec import ScheduleSpec, plan_fire, tick_instance_id
from celery_durable.store.records import NewInstance, from_db_time, now, to_db_time
from celery_durable.store.schema import instances, schedules
from celery_durable.store.writes import create_instances

if TYPE_CHECKING:
    from celery_durable.store.store import Store

#: ``start(schedule, instance_id, tick)``: the instance a tick starts and its start events
Starter = Callable[["ScheduleRecord", str, datetime], tuple[NewInstance, list[HistoryEvent]]]
#: most schedules one `fire_due` transaction takes, and most transactions one call runs
BATCH = 50
MAX_BATCHES = 20


def _ms(value: timedelta | None) -> int | None:
    return None if value is None else int(value / timedelta(milliseconds=1))


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _db(value: datetime | None) -> datetime | None:
    return None if value is None else to_db_time(value)


@dataclass(frozen=True)
class ScheduleRecord:
    """A stored schedule: its definition and what it has run."""

    schedule_id: str
    orchestrator: str
    input: Any = None
    interval: timedelta | None = None
    cron: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    overlap: str = "skip"
    catchup_window: timedelta | None = None
    paused: bool = False
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_instance_id: str | None = None
    buffered_at: datetime | None = None
    runs: int = 0
    missed: int = 0
    overlapped: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def spec(self) -> ScheduleSpec:
        return ScheduleSpec.make(self.interval, self.cron, self.start_at, self.end_at)

    def definition(self) -> tuple[Any, ...]:
        """What `create_schedule` was given (to tell a repeated create from a changed one)."""
        return (self.orchestrator, dumps(self.input), self.interval, self.cron, self.start_at,
                self.end_at, self.overlap, self.catchup_window)

    @classmethod
    def from_row(cls, row: Any) -> ScheduleRecord:
        return cls(
            schedule_id=row["schedule_id"], orchestrator=row["orchestrator"],
            input=None if row["input"] is None else loads(row["input"]),
            interval=(None if row["interval_ms"] is None
                      else timedelta(milliseconds=row["interval_ms"])),
            cron=row["cron"], start_at=_opt(row["start_at"]), end_at=_opt(row["end_at"]),
            overlap=row["overlap"],
            catchup_window=(None if row["catchup_ms"] is None
                            else timedelta(milliseconds=row["catchup_ms"])),
            paused=bool(row["paused"]), next_run_at=_opt(row["next_run_at"]),
            last_run_at=_opt(row["last_run_at"]), last_instance_id=row["last_instance_id"],
            buffered_at=_opt(row["buffered_at"]), runs=int(row["runs"]),
            missed=int(row["missed"]), overlapped=int(row["overlapped"]),
            created_at=_opt(row["created_at"]), updated_at=_opt(row["updated_at"]))

    def to_row(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id, "orchestrator": self.orchestrator,
            "input": None if self.input is None else dumps(self.input),
            "interval_ms": _ms(self.interval), "cron": self.cron,
            "start_at": _db(self.start_at), "end_at": _db(self.end_at),
            "overlap": self.overlap, "catchup_ms": _ms(self.catchup_window),
            "paused": int(self.paused), "next_run_at": _db(self.next_run_at),
            "last_run_at": _db(self.last_run_at), "last_instance_id": self.last_instance_id,
            "buffered_at": _db(self.buffered_at), "runs": self.runs, "missed": self.missed,
            "overlapped": self.overlapped, "created_at": _db(self.created_at or now()),
            "updated_at": _db(self.updated_at or now())}


@dataclass
class Fired:
    """An instance `fire_due` or `trigger` created: send its wake-up after the commit."""

    instance_id: str
    orchestrator: str


class ScheduleStore:
    """The schedules of one `Store` (``store.schedules``); each method is one transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _write(self) -> AbstractContextManager[Connection]:
        return self._store._write()  # noqa: SLF001  (the facade's transaction helpers)

    def _read(self) -> AbstractContextManager[Connection]:
        return self._store._read()  # noqa: SLF001

    def _lock(self, conn: Connection, schedule_id: str) -> ScheduleRecord | None:
        query = self._store._locking(  # noqa: SLF001
            select(schedules).where(schedules.c.schedule_id == schedule_id))
        row = conn.execute(query).mappings().first()
        return None if row is None else ScheduleRecord.from_row(row)

    def create(self, record: ScheduleRecord) -> ScheduleRecord:
        """Insert ``record``; if its id is taken, return the stored schedule instead (the
        caller compares definitions)."""
        try:
            with self._write() as conn:
                existing = self._lock(conn, record.schedule_id)
                if existing is not None:
                    return existing
                conn.execute(insert(schedules), record.to_row())
        except IntegrityError:  # created by another process meanwhile
            found = self.get(record.schedule_id)
            if found is not None:
                return found
            raise
        return record

    def get(self, schedule_id: str) -> ScheduleRecord | None:
        with self._read() as conn:
            row = conn.execute(select(schedules).where(
                schedules.c.schedule_id == schedule_id)).mappings().first()
        return None if row is None else ScheduleRecord.from_row(row)

    def list(self) -> builtins.list[ScheduleRecord]:
        """Every schedule, by id."""
        with self._read() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.schedule_id)).mappings()
            return [ScheduleRecord.from_row(row) for row in rows]

    def set_paused(self, schedule_id: str, paused: bool, at: datetime) -> ScheduleRecord | None:
        """Pause, or resume (the next tick is then the first at or after ``at``: ticks that fell
        during the pause are not caught up); None for an unknown id."""
        with self._write() as conn:
            record = self._lock(conn, schedule_id)
            if record is None:
                return None
            values: dict[str, Any] = {"paused": int(paused), "updated_at": to_db_time(at)}
            if not paused and record.paused:
                values["next_run_at"] = _db(record.spec.first_at_or_after(at))
                values["buffered_at"] = None
            conn.execute(update(schedules).where(schedules.c.schedule_id == schedule_id)
                         .values(values))
            return self._lock(conn, schedule_id)

    def delete(self, schedule_id: str) -> bool:
        """Delete a schedule (its instances stay); False for an unknown id."""
        with self._write() as conn:
            return bool(conn.execute(delete(schedules).where(
                schedules.c.schedule_id == schedule_id)).rowcount)

    def trigger(self, schedule_id: str, at: datetime, start: Starter) -> Fired | None:
        """Start one run now, whatever the overlap policy and whether paused; None for an
        unknown id."""
        with self._write() as conn:
            record = self._lock(conn, schedule_id)
            if record is None:
                return None
            instance_id = tick_instance_id(schedule_id, at) + "-trigger"
            self._create(conn, record, instance_id, at, start)
            conn.execute(update(schedules).where(schedules.c.schedule_id == schedule_id).values(
                last_run_at=to_db_time(at), last_instance_id=instance_id,
                runs=schedules.c.runs + 1, updated_at=to_db_time(at)))
        return Fired(instance_id, record.orchestrator)

    def _create(self, conn: Connection, record: ScheduleRecord, instance_id: str,
                tick: datetime, start: Starter) -> bool:
        taken = conn.execute(select(instances.c.instance_id)
                             .where(instances.c.instance_id == instance_id)).first()
        if taken is not None:  # this tick's instance exists (even finished): never twice
            return False
        (created,) = create_instances(conn, self._store.dialect,
                                      [start(record, instance_id, tick)], now())
        return created

    def fire_due(self, at: datetime, start: Starter) -> builtins.list[Fired]:
        """Fire the ticks due by ``at`` of the schedules no other sweeper holds (see the
        module's docstring); return the instances created, to be woken after the commit."""
        due = or_(schedules.c.next_run_at <= to_db_time(at), schedules.c.buffered_at.is_not(None))
        query = (select(schedules).where(schedules.c.paused == 0, due)
                 .order_by(schedules.c.next_run_at).limit(BATCH))
        with self._read() as conn:  # the usual sweep: nothing due, no write transaction
            if conn.execute(query.with_only_columns(schedules.c.schedule_id)).first() is None:
                return []
        if self._store.dialect != "sqlite":
            query = query.with_for_update(skip_locked=True)
        fired: builtins.list[Fired] = []
        for _ in range(MAX_BATCHES):  # a transaction per BATCH schedules, until none is due
            with self._write() as conn:
                rows = conn.execute(query).mappings().all()
                for row in rows:
                    fired.extend(self._fire(conn, ScheduleRecord.from_row(row), at, start))
            if len(rows) < BATCH:
                break
        return fired

    def _fire(self, conn: Connection, record: ScheduleRecord, at: datetime,
              start: Starter) -> Iterator[Fired]:
        running = False
        if record.last_instance_id is not None:
            status = conn.execute(select(instances.c.status).where(
                instances.c.instance_id == record.last_instance_id)).scalar()
            running = status is not None and not OrchestrationStatus(status).is_terminal
        plan = plan_fire(record.spec, record.overlap, record.catchup_window, record.next_run_at,
                         record.buffered_at, running, at)
        values: dict[str, Any] = {
            "next_run_at": _db(plan.next_run_at), "buffered_at": _db(plan.buffered_at),
            "missed": record.missed + plan.missed,
            "overlapped": record.overlapped + plan.overlapped, "updated_at": to_db_time(at)}
        started = 0
        for tick in plan.starts:
            instance_id = tick_instance_id(record.schedule_id, tick)
            if self._create(conn, record, instance_id, tick, start):
                started += 1
                values.update(last_run_at=to_db_time(tick), last_instance_id=instance_id)
                yield Fired(instance_id, record.orchestrator)
        values["runs"] = record.runs + started
        conn.execute(update(schedules).where(schedules.c.schedule_id == record.schedule_id)
                     .values(values))


def with_next_run(record: ScheduleRecord, at: datetime) -> ScheduleRecord:
    """``record`` with its first tick: the first at or after ``at`` (or ``start_at``)."""
    return dataclasses.replace(record, next_run_at=record.spec.first_at_or_after(at))
