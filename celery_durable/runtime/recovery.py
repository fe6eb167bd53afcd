"""Recovery: re-dispatch everything running instances wait on, after the broker lost messages.

The store is the source of truth (DESIGN principle 1): every message an instance waits for can be
derived from it. `recover` pages through the instances that have not ended and, for each:

- publishes an episode wake-up if it has inbox rows or is still PENDING (a delayed start is
  sent with its ETA when that is within ``durable_timer_horizon``, else left to the sweeper,
  which wakes instances whose inbox waits);
- re-publishes the activity message of every ``TaskScheduled`` without a completion (in history or
  waiting in the inbox), with the same deterministic Celery task id and attempt;
- re-publishes the timer message of every ``TimerCreated`` without ``TimerFired`` that is due
  within ``durable_timer_horizon``; later timers are left to the sweeper, which dispatches them
  as they come within the horizon;
- counts the ``SubOrchestrationCreated`` without a completion: each child is itself an instance
  that has not ended, so it is recovered in the same pass.

Before it reads a page, it releases the wake-up claims of its instances (see
`Store.request_wakeup`): the messages they stand for may be lost too.

It also re-publishes every outbox row (messages committed by an episode whose publication was
lost or never happened). Deliveries this duplicates are harmless: completions are recorded with
dedup keys and the engine drops a second completion of a task.

Instances are paged through `Store.running_instances`; their inbox, history and timers are read
a page at a time in one read-only transaction on the schema's tables (the history of the
execution the page saw, so that a continue-as-new meanwhile cannot mix two executions). The only
writes are releasing wake-up claims, and the ones the sweeper makes too: claiming undispatched
timers before sending them, and deleting re-published outbox rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from celery_durable.engine import history as h
from celery_durable.engine.actions import ScheduleActivity, scheduled_task_of
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import UnknownNameError
from celery_durable.payload import loads
from celery_durable.runtime import messages
from celery_durable.runtime.timer_queue import timer_queue
from celery_durable.store import InstanceRecord
from celery_durable.store.engine import READ_ONLY
from celery_durable.store.records import from_db_time, history_event, to_db_time
from celery_durable.store.schema import history, inbox, outbox, timers
from celery_durable.store.writes import chunks

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)
#: instances (and outbox rows) handled per page
BATCH = 200
TimerKey = tuple[str, str, int]


@dataclass
class RecoveryReport:
    """What `recover` re-dispatched (or, with ``dry_run``, would have)."""

    dry_run: bool = False
    #: instances that have not ended, examined
    instances: int = 0
    #: episode wake-ups published (instances with inbox rows, or PENDING)
    woken: int = 0
    #: activity messages re-published (scheduled activities without a completion)
    activities: int = 0
    #: timer messages re-published (timers due within the horizon, not fired yet)
    timers: int = 0
    #: timers beyond the horizon, not dispatched yet: the sweeper sends them in time
    timers_left_to_sweeper: int = 0
    #: delayed starts (``start_at``) beyond the horizon: the sweeper wakes them
    starts_left_to_sweeper: int = 0
    #: sub-orchestrations waited on (each child is recovered as an instance of its own)
    sub_orchestrations: int = 0
    #: outbox messages re-published
    outbox: int = 0
    #: what could not be re-dispatched, one sentence each
    problems: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        """Messages published (or, in a dry run, that would have been)."""
        return self.woken + self.activities + self.timers + self.outbox

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "messages": self.messages}


@dataclass
class _Waiting:
    """What one instance's inbox holds: whether it has rows, and task ids already completed."""

    rows: int = 0
    completed: set[int] = field(default_factory=set)


def recover(durable: Durable, *, dry_run: bool = False,
            now: datetime | None = None) -> RecoveryReport:
    """Re-dispatch what every running instance waits on; see the module docstring."""
    now = now or datetime.now(timezone.utc)
    report = RecoveryReport(dry_run=dry_run)
    store = durable.store
    after: str | None = None
    while True:
        page = store.running_instances(BATCH, after_id=after)
        if not page:
            break
        after = page[-1].instance_id
        live = [record for record in page if not record.status.is_terminal]
        report.instances += len(live)
        if not dry_run:
            # before their inbox is read (as an episode does): a claim whose message the broker
            # lost would swallow every later wake-up of the instance
            store.forget_wakeups([record.instance_id for record in live])
        plan = _Plan(durable, report, now, dry_run)
        plan.instances(live)
        if not dry_run:
            messages.publish(durable.app, plan.messages)
    _recover_outbox(durable, report, now, dry_run)
    if report.messages or report.problems:
        logger.info("recover%s: %d instance(s), %d wake-up(s), %d activit(ies), %d timer(s), "
                    "%d outbox message(s), %d problem(s)", " (dry run)" if dry_run else "",
                    report.instances, report.woken, report.activities, report.timers,
                    report.outbox, len(report.problems))
    return report


class _Plan:
    """The messages that recover one page of instances."""

    def __init__(self, durable: Durable, report: RecoveryReport, now: datetime,
                 dry_run: bool) -> None:
        self.durable = durable
        self.report = report
        self.now = now
        self.dry_run = dry_run
        self.messages: list[messages.Message] = []
        #: undispatched timers due within the horizon: claimed (as the sweeper does) before
        #: they are sent, so that a sweeper running meanwhile does not send them too
        self.unclaimed: dict[TimerKey, messages.Message] = {}

    def instances(self, records: Sequence[InstanceRecord]) -> None:
        """Plan the messages of ``records`` (one page); claims timers unless a dry run."""
        if not records:
            return
        executions = {record.instance_id: record.execution_id for record in records}
        with _read_only(self.durable) as conn:
            waiting = _inbox_of(conn, executions)
            tasks = _task_events_of(conn, executions)
            timer_rows = _timers_of(conn, list(executions))
        for record in records:
            self.instance(record, tasks.get(record.instance_id, []),
                          waiting.get(record.instance_id, _Waiting()), timer_rows)
        if self.unclaimed:
            claimed = (list(self.unclaimed) if self.dry_run else
                       self.durable.store.mark_timers_dispatched(list(self.unclaimed), self.now))
            self.messages.extend(self.unclaimed[key] for key in claimed)
            self.report.timers += len(claimed)

    def instance(self, record: InstanceRecord, events: Iterable[h.HistoryEvent],
                 waiting: _Waiting, timer_rows: dict[TimerKey, _TimerState]) -> None:
        iid, execution_id = record.instance_id, record.execution_id
        if waiting.rows or record.status is OrchestrationStatus.PENDING:
            self.wake(record)
        scheduled: dict[int, h.HistoryEvent] = {}
        completed = set(waiting.completed)
        for event in events:
            if event.task_id is None:
                continue
            if event.kind in h.SCHEDULING_KINDS:
                scheduled[event.task_id] = event
            elif event.kind in h.COMPLETION_KINDS:
                completed.add(event.task_id)
        for task_id, event in sorted(scheduled.items()):
            if task_id in completed:
                continue
            if event.kind == h.TASK_SCHEDULED:
                self.activity(record, event)
            elif event.kind == h.TIMER_CREATED:
                self.timer(record, event, timer_rows.get((iid, execution_id, task_id)))
            elif event.kind == h.SUB_ORCHESTRATION_CREATED:
                self.report.sub_orchestrations += 1

    def wake(self, record: InstanceRecord) -> None:
        """An episode wake-up; a delayed start's is sent with its ETA, if within the horizon."""
        message = self.durable.episode_message(record.instance_id, record.name)
        start_at = record.start_at
        if record.status is OrchestrationStatus.PENDING and start_at is not None \
                and start_at > self.now:
            if start_at - self.now > self.durable.settings.timer_horizon:
                # no ETA message that far ahead (Redis' visibility_timeout, RabbitMQ's
                # consumer_timeout): the sweeper wakes instances whose inbox waits
                self.report.starts_left_to_sweeper += 1
                return
            message["options"]["eta"] = start_at.isoformat()
        self.messages.append(message)
        self.report.woken += 1

    def activity(self, record: InstanceRecord, event: h.HistoryEvent) -> None:
        assert event.task_id is not None and event.name is not None
        data = event.data if isinstance(event.data, dict) else {}
        call = scheduled_task_of(event.task_id, event.name, data)
        if call is not None:  # a ctx.call_task: sent by name, with its link and link_error
            self.messages.append(messages.plain_task_message(
                record.instance_id, record.execution_id, call, record.name,
                self.durable.episode_queue(record.name)))
            self.report.activities += 1
            return
        try:
            queue = self.durable.registry.activity(event.name).queue
            if data.get("local"):  # a batch's leftover local activity: as its episode sent it
                queue = self.durable.episode_queue(record.name)
        except UnknownNameError:
            self.report.problems.append(
                f"activity {event.name!r} (task {event.task_id} of {record.instance_id!r}) is "
                "not registered in this process, so its queue is unknown: run recover with the "
                "app that imports it (-A/--include)")
            return
        action = ScheduleActivity(event.task_id, event.name, data.get("input"),
                                  int(data.get("attempt") or 1))
        self.messages.append(messages.activity_message(
            record.instance_id, record.execution_id, action, queue, record.name))
        self.report.activities += 1

    def timer(self, record: InstanceRecord, event: h.HistoryEvent,
              row: _TimerState | None) -> None:
        assert event.task_id is not None
        data = event.data if isinstance(event.data, dict) else {}
        fire_at = h.utc(datetime.fromisoformat(data["fire_at"]))
        settings = self.durable.settings
        key = (record.instance_id, record.execution_id, event.task_id)
        if fire_at - self.now > settings.timer_horizon:
            if row is not None and row.dispatched_at is None:
                self.report.timers_left_to_sweeper += 1
            else:
                self.report.problems.append(
                    f"timer {event.task_id} of {record.instance_id!r} fires at "
                    f"{fire_at.isoformat()}, beyond the timer horizon, but the store marks it "
                    f"{'dispatched' if row else 'missing'}, so the sweeper will not send it: "
                    "set its dispatched_at to NULL in durable_timers (the sweeper then sends "
                    "it in time), or lengthen durable_timer_horizon and run recover again")
            return
        message = messages.timer_message(record.instance_id, record.execution_id,
                                         event.task_id, fire_at, timer_queue(self.durable))
        if row is not None and row.dispatched_at is None:
            self.unclaimed[key] = message
            return
        self.messages.append(message)
        self.report.timers += 1


@dataclass(frozen=True)
class _TimerState:
    fire_at: datetime
    dispatched_at: datetime | None


@contextmanager
def _read_only(durable: Durable) -> Iterator[Connection]:
    """A read-only transaction on the store's engine (a plain BEGIN on SQLite: no write lock).

    Callers read through the `Store` first, which creates the schema if needed."""
    with durable.store.engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def _inbox_of(conn: Connection, executions: dict[str, str]) -> dict[str, _Waiting]:
    """Each instance's inbox: how many rows, and the task ids whose completion waits there."""
    found: dict[str, _Waiting] = defaultdict(_Waiting)
    for part in chunks(list(executions)):
        query = (select(inbox.c.instance_id, inbox.c.execution_id, inbox.c.event)
                 .where(inbox.c.instance_id.in_(part)))
        for iid, execution_id, text in conn.execute(query):
            waiting = found[iid]
            waiting.rows += 1
            if execution_id not in (None, executions[iid]):
                continue
            event = loads(text)
            if event.get("kind") in h.COMPLETION_KINDS and event.get("task_id") is not None:
                waiting.completed.add(int(event["task_id"]))
    return found


def _task_events_of(conn: Connection,
                    executions: dict[str, str]) -> dict[str, list[h.HistoryEvent]]:
    """Each instance's scheduling and completion events of its current execution, in order."""
    kinds = sorted(h.SCHEDULING_KINDS | h.COMPLETION_KINDS)
    found: dict[str, list[h.HistoryEvent]] = defaultdict(list)
    for part in chunks(list(executions)):
        query = (select(history).where(history.c.instance_id.in_(part),
                                       history.c.kind.in_(kinds))
                 .order_by(history.c.instance_id, history.c.seq))
        for row in conn.execute(query).mappings():
            if row["execution_id"] == executions[row["instance_id"]]:
                found[row["instance_id"]].append(history_event(row))
    return found


def _timers_of(conn: Connection, ids: list[str]) -> dict[TimerKey, _TimerState]:
    rows: dict[TimerKey, _TimerState] = {}
    for part in chunks(ids):
        query = (select(timers.c.instance_id, timers.c.execution_id, timers.c.task_id,
                        timers.c.fire_at, timers.c.dispatched_at)
                 .where(timers.c.instance_id.in_(part)))
        for iid, execution_id, task_id, fire_at, dispatched_at in conn.execute(query):
            rows[(iid, execution_id, int(task_id))] = _TimerState(
                from_db_time(fire_at),
                None if dispatched_at is None else from_db_time(dispatched_at))
    return rows


def _recover_outbox(durable: Durable, report: RecoveryReport, now: datetime,
                    dry_run: bool) -> None:
    """Re-publish every outbox row written before ``now`` (and delete it, as the sweeper does)."""
    store = durable.store
    if dry_run:
        with _read_only(durable) as conn:
            count = conn.execute(select(func.count()).select_from(outbox)
                                 .where(outbox.c.created_at < to_db_time(now))).scalar_one()
        report.outbox = int(count)
        return
    while True:
        rows = store.pending_outbox(now, BATCH)
        if not rows:
            return
        messages.publish(durable.app, [message for _, _, message in rows])
        store.delete_outbox([row_id for row_id, _, _ in rows])
        report.outbox += len(rows)
