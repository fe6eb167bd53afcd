"""Real ``celery worker`` subprocesses (``-A chaos_app``) on a PostgreSQL store and a Redis or
RabbitMQ broker, that a test kills, restarts and checks: the chaos, lost-message and restart tests.

`chaos_cluster` gives a `ChaosCluster`; `ChaosCluster.schedule` starts a workload
(``chaos_workflows.workload``), `kill_and_restart` SIGKILLs a worker's whole process group and
starts a new one, `wait_all` waits for every instance to end, and `check` asserts what must hold
and returns the figures of the run (`Figures`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chaos_workflows as cw
import sqlalchemy as sa
from edge_app import env_config, make_app
from services import RABBITMQ_URL, REDIS_URL, database, require
from workers import (
    WorkerProcess,
    delete_queue,
    print_logs,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, DurableClient, OrchestrationStatus
from celery_durable.store.schema import inbox, redispatches, timers

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
#: the Redis database of the chaos runs on the shared Redis (their queues have unique names)
REDIS_DB = 11
READY_TIMEOUT = 60.0
SCHEDULING = {"TaskScheduled", "TimerCreated", "SubOrchestrationCreated"}
COMPLETIONS = {"TaskCompleted", "TaskFailed", "TimerFired", "SubOrchestrationCompleted",
               "SubOrchestrationFailed"}
#: durable settings of every chaos run: a sweeper that recovers within seconds
DURABLE_CONF = {"durable_sweep_interval": 1.0, "durable_recovery_grace": 5.0,
                "durable_activity_redispatch_after": 10.0}


def broker_url(broker: str) -> str:
    """The shared broker of ``broker`` ("redis" or "rabbitmq"), skipping if it is down."""
    require(broker)
    return f"{REDIS_URL}/{REDIS_DB}" if broker == "redis" else RABBITMQ_URL


def kill_group(worker: WorkerProcess) -> None:
    """SIGKILL the worker's whole process group (main process and pool children) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.wait()


@dataclass
class Figures:
    """What one run did, for the report of ``make chaos``."""

    broker: str
    orchestrations: int = 0
    instances: int = 0
    kills: int = 0
    restarts: int = 0
    activity_executions: int = 0
    reruns: int = 0
    redispatched: int = 0
    lost: int = 0
    duplicated_history_events: int = 0
    last_kill_to_done: float = 0.0
    longest_stall: float = 0.0

    ROWS = (("orchestrations", "orchestrations (+ sub-orchestrations)"), ("kills", "kills"),
            ("restarts", "restarts"), ("activity_executions", "activity executions"),
            ("reruns", "activity runs again (redelivered or re-dispatched)"),
            ("redispatched", "re-dispatched by the sweeper (activities and timers)"),
            ("lost", "lost"),
            ("duplicated_history_events", "duplicated history events"),
            ("last_kill_to_done", "last kill to all done (s)"),
            ("longest_stall", "longest wait for the next instance to end, after the kills (s)"))

    def cell(self, key: str) -> str:
        if key == "orchestrations":
            return f"{self.orchestrations} (+{self.instances - self.orchestrations})"
        value = getattr(self, key)
        return f"{value:.1f}" if isinstance(value, float) else str(value)


def table(figures: list[Figures]) -> str:
    """The figures of several runs as a Markdown table, one column per broker."""
    lines = ["| | " + " | ".join(f.broker for f in figures) + " |",
             "|---|" + "---|" * len(figures)]
    lines += [f"| {label} | " + " | ".join(f.cell(key) for f in figures) + " |"
              for key, label in Figures.ROWS]
    return "\n".join(lines)


@dataclass
class ChaosCluster:
    """The client side (app, Durable) of one store + broker and its workers, live and dead."""

    broker: str
    broker_url: str
    app: Any
    durable: Durable
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    dead: list[WorkerProcess] = field(default_factory=list)
    started: int = 0
    kills: int = 0
    restarts: int = 0
    jobs: dict[str, cw.Job] = field(default_factory=dict)
    raised: set[str] = field(default_factory=set)
    longest_stall: float = 0.0

    @property
    def client(self) -> DurableClient:
        return self.durable.client

    def start_worker(self, concurrency: int = 2) -> WorkerProcess:
        self.started += 1
        node = f"chaos{self.started}-{uuid.uuid4().hex[:6]}@reliability"
        worker = WorkerProcess("chaos_app:app", node, concurrency=concurrency,
                               env=subprocess_env(self.env, [HERE, TESTS]), cwd=HERE,
                               log_path=self.tmp / f"worker{self.started}.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self) -> None:
        """Every live worker answers a ping."""
        nodes = {w.node for w in self.workers}
        answered: set[str] = set()

        def all_answered() -> bool:
            replies = self.app.control.ping(destination=sorted(nodes), timeout=0.5)
            answered.update(node for reply in replies or [] for node in reply)
            return answered == nodes

        with self.logs_on_failure():
            wait_until(lambda: f"a ping answered by {sorted(nodes - answered)}", all_answered,
                       time.monotonic() + READY_TIMEOUT, self.workers, interval=0)

    def kill(self, worker: WorkerProcess) -> None:
        kill_group(worker)
        self.workers.remove(worker)
        self.dead.append(worker)
        self.kills += 1

    def kill_and_restart(self, rng: random.Random) -> None:
        """SIGKILL a random live worker's process group and start another in its place."""
        self.kill(rng.choice(self.workers))
        self.start_worker()
        self.restarts += 1

    def stop_workers(self) -> None:
        stop_all(self.workers)
        self.dead.extend(self.workers)
        self.workers.clear()

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        """Print the log of every worker this cluster started, dead or alive, if the block
        raises."""
        try:
            yield
        except BaseException:
            print_logs([*self.dead, *self.workers])
            raise

    def logs(self) -> str:
        """The logs of every worker this cluster started."""
        return "\n".join(worker.log() for worker in [*self.dead, *self.workers])

    # -- the workload ------------------------------------------------------------------------------
    def schedule(self, jobs: list[cw.Job]) -> list[str]:
        ids = []
        for one in jobs:
            iid = self.client.schedule_new_orchestration(one.orchestrator, input=one.input)
            self.jobs[iid] = one
            ids.append(iid)
        return ids

    def raise_events(self, share: float, rng: random.Random) -> int:
        """Raise the "go" event of about ``share`` of the event jobs still waiting for one."""
        waiting = [iid for iid, one in self.jobs.items()
                   if one.orchestrator == "chaos.event" and iid not in self.raised]
        chosen = [iid for iid in waiting if rng.random() < share] if share < 1 else waiting
        for iid in chosen:
            self.client.raise_orchestration_event(iid, "go", data=self.jobs[iid].event)
            self.raised.add(iid)
        return len(chosen)

    def chaos(self, jobs: list[cw.Job], seconds: float, rng: random.Random) -> float:
        """Schedule ``jobs`` at an even pace over ``seconds`` (a fifth of them at once) while a
        random worker is killed and replaced every 2-5 s, raising events meanwhile; then raise
        the events still due. Returns the monotonic time of the last kill."""
        start = time.monotonic()
        end = start + seconds
        head = len(jobs) // 5
        self.schedule(jobs[:head])
        rest = jobs[head:]
        next_kill = start + rng.uniform(2.0, 5.0)
        last = start
        while True:
            now = time.monotonic()
            due = len(rest) if now >= end else int(len(rest) * (now - start) / seconds)
            scheduled = len(self.jobs) - head
            self.schedule(rest[scheduled:due])
            if now >= end:
                break
            if now >= next_kill:
                self.kill_and_restart(rng)
                last = now
                next_kill = now + rng.uniform(2.0, 5.0)
                self.raise_events(0.3, rng)
            time.sleep(0.1)
        self.raise_events(1.0, rng)
        return last

    def unfinished(self) -> int:
        counts = self.durable.store.count_by_status()
        return sum(n for status, n in counts.items()
                   if not OrchestrationStatus(status).is_terminal)

    def wait_all(self, timeout: float) -> None:
        """Wait until every instance (children too) has ended; the live workers must stay up.
        `longest_stall`: the longest time meanwhile without an instance ending."""
        last = {"count": -1, "at": time.monotonic()}

        def done() -> bool:
            count, now = self.unfinished(), time.monotonic()
            if count != last["count"]:
                self.longest_stall = max(self.longest_stall, now - last["at"])
                last.update(count=count, at=now)
            return count == 0

        wait_until(lambda: f"all instances done; not: {self.describe_unfinished()}", done,
                   time.monotonic() + timeout, self.workers, interval=0.2,
                   retry_on=(sa.exc.DBAPIError,))

    def describe_unfinished(self, limit: int = 10) -> str:
        """What the first ``limit`` unfinished instances wait on: status, inbox rows, and the
        tasks scheduled without a completion."""
        store = self.durable.store
        lines = []
        for record in store.running_instances(limit):
            history = store.get_history(record.instance_id)
            done = {e.task_id for e in history if e.kind in COMPLETIONS}
            open_tasks = [f"{e.kind}({e.task_id}, {e.name})" for e in history
                          if e.kind in SCHEDULING and e.task_id not in done]
            lines.append(f"{record.instance_id} {record.name} {record.status.value}, "
                         f"{store.inbox_size(record.instance_id)} inbox row(s), waits on "
                         f"{open_tasks or 'nothing scheduled'}")
        return "\n".join(lines)

    # -- the checks --------------------------------------------------------------------------------
    def check(self, last_kill: float | None = None) -> Figures:
        """Every job ended as expected, every instance completed, no completion written twice;
        returns the figures (``last_kill``: monotonic time of the last kill)."""
        figures = Figures(self.broker, orchestrations=len(self.jobs), kills=self.kills,
                          restarts=self.restarts, longest_stall=self.longest_stall)
        if last_kill is not None:
            figures.last_kill_to_done = time.monotonic() - last_kill
        wrong = []
        for iid, one in self.jobs.items():
            state = self.client.get_orchestration_state(iid)
            if state is None or state.runtime_status is not OrchestrationStatus.COMPLETED \
                    or state.output != one.expected:
                wrong.append((iid, one, state))
        figures.lost = len(wrong)
        duplicates: list[str] = []
        ids = self._all_instance_ids()
        figures.instances = len(ids)
        for iid in ids:
            duplicates += self._duplicates(iid)
        figures.duplicated_history_events = len(duplicates)
        with self.durable.store.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(cw.runs)).scalar_one()
            distinct = conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(cw.runs.c.instance_id, cw.runs.c.task_id, cw.runs.c.attempt)
                .distinct().subquery())).scalar_one()
            redispatched = conn.execute(sa.select(sa.func.coalesce(
                sa.func.sum(redispatches.c.redispatched), 0))).scalar_one()
        figures.activity_executions = int(total)
        figures.reruns = int(total) - int(distinct)
        figures.redispatched = int(redispatched)
        assert not wrong, f"{len(wrong)} instance(s) did not end as expected: {wrong[:5]}"
        assert not duplicates, f"history written twice: {duplicates[:10]}"
        wait_until("the inbox drained and no timer left", self._nothing_left,
                   time.monotonic() + 30, interval=0.5)
        return figures

    def _nothing_left(self) -> bool:
        """No inbox row waits (a late duplicate delivery to an ended instance is dropped by its
        next episode) and no timer row is left."""
        with self.durable.store.engine.connect() as conn:
            return not any(conn.execute(sa.select(sa.func.count()).select_from(table))
                           .scalar_one() for table in (inbox, timers))

    def _all_instance_ids(self) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            page = self.client.query_orchestrations(limit=1000, continuation_token=token)
            ids += [state.instance_id for state in page.items]
            if page.continuation_token is None:
                return ids
            token = page.continuation_token

    def _duplicates(self, iid: str) -> list[str]:
        history = self.client.get_orchestration_history(iid)
        found = []
        if [e.seq for e in history] != list(range(len(history))):
            found.append(f"{iid}: seqs {[e.seq for e in history]}")
        scheduled = Counter(e.task_id for e in history if e.kind in SCHEDULING)
        completed = Counter(e.task_id for e in history if e.kind in COMPLETIONS)
        found += [f"{iid}: task {t} scheduled {n} times" for t, n in scheduled.items() if n > 1]
        found += [f"{iid}: task {t} completed {n} times" for t, n in completed.items() if n > 1]
        found += [f"{iid}: task {t} completed, never scheduled" for t in completed
                  if t not in scheduled]
        raised = sum(e.kind == "EventRaised" for e in history)
        if raised > 1:
            found.append(f"{iid}: {raised} EventRaised for one event")
        ends = sum(e.kind == "ExecutionCompleted" for e in history)
        if ends > 1:
            found.append(f"{iid}: {ends} ExecutionCompleted")
        return found


@contextlib.contextmanager
def chaos_cluster(tmp: Path, broker: str, *, url: str | None = None, workers: int = 2,
                  conf: dict[str, Any] | None = None,
                  store_url: str | None = None) -> Iterator[ChaosCluster]:
    """A fresh PostgreSQL database (or ``store_url``) and a queue of its own on ``broker``
    ("redis" or "rabbitmq"; ``url``: another server's URL) with ``workers`` ready workers."""
    conf = {**DURABLE_CONF, **(conf or {})}
    url = url or broker_url(broker)
    queue = f"durable-chaos-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        store = store_url or stack.enter_context(database("postgresql", "durable_chaos"))
        app, durable = make_app(url, store, queue, conf, name="chaos-client")
        durable.store.create_schema()
        cw.runs.create(durable.store.engine, checkfirst=True)
        env = {**env_config(url, store, queue, conf), "CHAOS_RUNS_URL": store}
        cluster = ChaosCluster(broker, url, app, durable, env, tmp)
        try:
            for _ in range(workers):
                cluster.start_worker()
            cluster.wait_ready()
            yield cluster
        finally:
            cluster.stop_workers()
            durable.store.dispose()
            delete_queue(url, queue, app.conf.broker_transport_options)
