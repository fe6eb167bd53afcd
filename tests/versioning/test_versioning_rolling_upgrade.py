"""A rolling upgrade for real: ``celery worker`` subprocesses of versions 1 and 2 on one Redis
broker and one fresh PostgreSQL database.

Instances start while only the version-1 worker runs and wait for an external event; then the
version-2 worker starts and version 1 stops, and the event is raised. Per strategy:
CURRENT_OR_OLDER lets version 2 finish them; STRICT + REJECT parks them (without spinning the
worker or the broker: measured) until a version-1 worker is back; STRICT + FAIL fails them.
Each worker logs to a temporary file, printed at teardown (pytest shows it when a test fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from services import REDIS_URL, database, require
from versioned_workflows import ORDER, declare

from celery_durable import Durable, OrchestrationStatus, VersioningOptions

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
BROKER = f"{REDIS_URL}/6"
Status = OrchestrationStatus


class Worker:
    """One ``celery -A versioned_worker worker --pool threads`` subprocess."""

    def __init__(self, upgrade: Upgrade, version: str, match: str, failure: str,
                 queues: list[str], without_code: bool = False) -> None:
        self.upgrade = upgrade
        self.node = f"v{version}-{uuid.uuid4().hex[:6]}@versioning"
        self.log_path = upgrade.tmp / f"{self.node.split('@')[0]}.log"
        env = {**os.environ, "VERSIONED_BROKER": BROKER, "VERSIONED_STORE": upgrade.store_url,
               "VERSIONED_QUEUE": upgrade.queue, "WORKER_VERSION": version,
               "WORKER_MATCH": match, "WORKER_FAILURE": failure, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)] + (  # and the
                   [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),  # caller's
               **({"WORKER_WITHOUT_CODE": "1"} if without_code else {})}
        command = [sys.executable, "-m", "celery", "-A", "versioned_worker", "worker",
                   "--pool", "threads", "--concurrency", "2", "-Q", ",".join(queues),
                   "--hostname", self.node, "--without-gossip", "--without-mingle",
                   "--without-heartbeat", "--loglevel", "INFO"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(command, cwd=HERE, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        upgrade.workers.append(self)
        until(lambda: self.stats(timeout=0.5) is not None, 30, f"{self.node} to start", self)

    def stats(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The worker's ``durable_stats`` (None if it does not answer)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.node} exited ({self.proc.returncode}):\n{self.log()}")
        replies = self.upgrade.app.control.broadcast(
            "durable_stats", reply=True, destination=[self.node], timeout=timeout)
        return next((reply[self.node] for reply in replies if self.node in reply), None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Warm shutdown, as a deployment stops a worker."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Upgrade:
    """The client side of the deployment (it schedules with default_version "1") and its
    workers; one Redis queue family and one fresh database."""

    def __init__(self, tmp: Path, store_url: str) -> None:
        self.tmp = tmp
        self.store_url = store_url
        self.queue = f"versioning-{uuid.uuid4().hex[:8]}"
        self.stamp_queue = f"{self.queue}.stamp"
        self.app = Celery("versioning-client", broker=BROKER, set_as_current=False)
        self.app.conf.update(task_default_queue=self.queue, result_backend=None,
                             broker_connection_retry_on_startup=True)
        self.durable = Durable(self.app, store_url=store_url,
                               versioning=VersioningOptions(default_version="1"))
        declare(self.durable, self.stamp_queue)
        self.client = self.durable.client
        self.redis = redis.Redis.from_url(BROKER)
        self.workers: list[Worker] = []

    def worker(self, version: str, match: str, failure: str, *, stamps: bool = False,
               without_code: bool = False) -> Worker:
        """A worker consuming the episode queue (``-Q``), and the stamp queue if ``stamps``;
        ``without_code``: it imports none of the orchestrators."""
        queues = [self.queue] + ([self.stamp_queue] if stamps else [])
        return Worker(self, version, match, failure, queues, without_code)

    def waiting(self, count: int) -> list[str]:
        """``count`` instances started and waiting for 'go'."""
        ids = [self.client.schedule_new_orchestration(ORDER, input=n) for n in range(count)]
        for instance_id in ids:
            state = self.client.wait_for_orchestration_start(instance_id, timeout=30)
            assert state.runtime_status is Status.RUNNING and state.version == "1"
        return ids

    def go(self, ids: list[str]) -> None:
        for instance_id in ids:
            self.client.raise_orchestration_event(instance_id, "go")

    def finish(self, ids: list[str], timeout: float = 30) -> list[Any]:
        return [self.client.wait_for_orchestration_completion(i, timeout=timeout) for i in ids]

    def queued(self, queue: str) -> int:
        """Messages waiting in a Redis queue (every priority list of it)."""
        keys = [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]
        return sum(int(self.redis.llen(key)) for key in keys)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for key in self.redis.scan_iter(match=f"*{self.queue}*"):
            self.redis.delete(key)
        self.redis.close()
        self.durable.store.dispose()


def until(condition: Callable[[], Any], timeout: float, what: str,
          worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not condition():
        if time.monotonic() > deadline:
            log = f"\n{worker.log()}" if worker is not None else ""
            raise AssertionError(f"timed out waiting for {what}{log}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


@pytest.fixture
def upgrade(tmp_path: Path) -> Iterator[Upgrade]:
    require("redis")
    with database("postgresql", "durable_versioning") as store_url:
        deployment = Upgrade(tmp_path, store_url)
        try:
            yield deployment
        finally:
            deployment.close()
            for worker in deployment.workers:  # captured: pytest shows it if the test failed
                print(f"--- log of {worker.node} ---\n{worker.log()}")


def test_current_or_older_newer_workers_finish_older_instances(upgrade: Upgrade) -> None:
    v1 = upgrade.worker("1", "CURRENT_OR_OLDER", "REJECT")
    old = upgrade.waiting(3)
    v2 = upgrade.worker("2", "CURRENT_OR_OLDER", "REJECT", stamps=True)
    v1.stop()
    new = upgrade.client.schedule_new_orchestration(ORDER, input=10, version="2")
    upgrade.go([*old, new])
    states = upgrade.finish([*old, new])
    assert [s.runtime_status for s in states] == [Status.COMPLETED] * 4
    # old instances keep the path their history has; the new one takes version 2's new step
    assert [s.output for s in states] == [
        *({"version": "1", "value": n, "stamp": "2", "finished_by": "2"} for n in range(3)),
        {"version": "2", "value": 110, "stamp": "2", "finished_by": "2"}]
    assert v2.stats()["rejected"] == 0


def test_strict_reject_parks_instances_until_their_version_is_back(upgrade: Upgrade) -> None:
    v1 = upgrade.worker("1", "STRICT", "REJECT")
    assert f"{upgrade.queue}.v1" in v1.stats()["queues"]  # added to its -Q by the bootstep
    old = upgrade.waiting(3)
    v2 = upgrade.worker("2", "STRICT", "REJECT", stamps=True)
    v1.stop()
    upgrade.go(old)
    parked = f"{upgrade.queue}.v1"
    until(lambda: upgrade.queued(parked) == 3 and upgrade.queued(upgrade.queue) == 0, 20,
          "the rejected wake-ups to reach the version-1 queue", v2)
    before = v2.stats()
    window = 3.0  # a measurement window: six sweeps of v2's sweeper (interval 0.5 s, grace 1 s)
    time.sleep(window)
    after = v2.stats()
    figures = {key: (before[key], after[key]) for key in ("episodes", "rejected", "published",
                                                         "executed")}
    print(f"\nwhile parked for {window} s: {figures}, cpu {after['cpu'] - before['cpu']:.3f} s, "
          f"{parked} holds {upgrade.queued(parked)}")
    assert before["rejected"] == 3 and before["episodes"] == 0
    for key in ("episodes", "rejected", "published", "executed"):
        assert after[key] == before[key], key
    assert after["cpu"] - before["cpu"] < 0.5
    assert upgrade.queued(parked) == 3
    for instance_id in old:
        assert upgrade.client.get_orchestration_state(instance_id).runtime_status \
            is Status.RUNNING
        assert upgrade.durable.store.inbox_size(instance_id) == 1  # the event, kept
    # a version-1 worker is back: it finishes them; their activity runs on version 2 (only it
    # consumes the stamp queue), whose inline episode leaves the completion to version 1
    upgrade.worker("1", "STRICT", "REJECT")
    states = upgrade.finish(old)
    assert [s.output for s in states] == [
        {"version": "1", "value": n, "stamp": "2", "finished_by": "1"} for n in range(3)]
    final = v2.stats()
    # version 2 ran the activities, and never an episode of these instances: each completion it
    # recorded went to the inbox and its wake-up to version 1's queue
    assert final["executed"].get("upgrade.stamp") == 3 and final["episodes"] == 0
    assert final["rejected"] >= 6
    for instance_id in old:
        kinds = [e.kind for e in upgrade.client.get_orchestration_history(instance_id)]
        assert kinds.count("EventRaised") == 1 and kinds.count("TaskCompleted") == 1


def test_strict_fail_fails_instances_of_other_versions(upgrade: Upgrade) -> None:
    v1 = upgrade.worker("1", "STRICT", "FAIL")
    old = upgrade.waiting(2)
    upgrade.worker("2", "STRICT", "FAIL")
    v1.stop()
    upgrade.go(old)
    for state in upgrade.finish(old):
        assert state.runtime_status is Status.FAILED
        assert state.failure_details.error_type == "VersionMismatchError"
        message = state.failure_details.message
        assert "version '1'" in message and "version '2'" in message and "STRICT" in message



def test_clients_that_ship_before_the_workers_wait_for_them(upgrade: Upgrade) -> None:
    """A web tier without the code starts a new orchestrator by name while the only worker
    does not import it yet (REJECT): the instances wait, at no cost once parked, and the
    worker deployed with the code runs them; nothing is lost, nothing fails."""
    web_app = Celery("web-tier", broker=BROKER, set_as_current=False)
    web_app.conf.update(task_default_queue=upgrade.queue, result_backend=None)
    web = Durable(web_app, store_url=upgrade.store_url)  # imports no orchestrator
    assert ORDER not in web.registry.orchestrators
    old = upgrade.worker("1", "NONE", "REJECT", without_code=True)
    ids = [web.client.schedule_new_orchestration(ORDER, input=n) for n in range(3)]
    until(lambda: old.stats()["rejected"] >= 3, 20, "the old worker to reject them", old)
    for instance_id in ids:
        state = web.client.get_orchestration_state(instance_id)
        assert state.runtime_status is Status.PENDING, state
    assert old.stats()["episodes"] == 0
    new = upgrade.worker("1", "NONE", "REJECT", stamps=True)
    for instance_id in ids:  # started by the new worker (a bounced wake-up, or its sweeper)
        upgrade.client.wait_for_orchestration_start(instance_id, timeout=30)
    old.stop()
    upgrade.go(ids)
    states = upgrade.finish(ids)
    assert [s.runtime_status for s in states] == [Status.COMPLETED] * 3
    assert new.stats()["episodes"] >= 3
    web.store.dispose()
