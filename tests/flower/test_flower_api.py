"""Orchestrations seen through a real Flower: its HTTP API lists our tasks.

A fresh PostgreSQL database and a unique queue on Redis; ``celery worker -E --pool prefork
--concurrency 2`` and ``celery flower --basic-auth`` are subprocesses that load
`durable_flower_app` (one ``sys.executable -m celery`` each). Flower is ready once its event
receiver has heard our worker (``/api/workers?status=1`` lists it alive): task events sent after
that reach it. Then one orchestration runs (a fan-out of three activities, then one sequential
activity) and Flower's ``/api/tasks`` must list its orchestration task and each activity task.

Each subprocess's log goes to a temporary file; a failing test prints them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import durable_flower_app as fa
import pytest
import workers
from services import REDIS_URL, database, require

from celery_durable import Durable, OrchestrationStatus

pytestmark = pytest.mark.e2e

FLOWER_DIR = Path(__file__).resolve().parent
#: a Redis db of its own (the e2e tests use 3 and 4): events are broadcast per db
BROKER_URL = f"{REDIS_URL}/5"
EPISODE_TASK = "celery_durable.episode"
USER = "durable"
READY_TIMEOUT = 30.0
SEEN_TIMEOUT = 10.0
#: how long a subprocess may take to stop before its process group is killed
STOP_TIMEOUT = 10.0


@dataclass
class Setup:
    queue: str
    node: str
    base_url: str
    password: str
    durable: Durable
    worker: workers.WorkerProcess
    flower: workers.CeleryProcess

    @property
    def processes(self) -> list[workers.CeleryProcess]:
        return [self.worker, self.flower]

    def get(self, path: str, auth: tuple[str, str] | None | bool = True,
            timeout: float = 5.0) -> tuple[int, Any]:
        """GET ``path`` from Flower: (status, JSON body, or text when it is not JSON)."""
        request = urllib.request.Request(self.base_url + path)
        if auth is True:
            auth = (USER, self.password)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def poll(self, what: str, check: Callable[[], Any], deadline: float) -> Any:
        """Call ``check`` until it returns something truthy; fail at ``deadline``."""
        return workers.wait_until(what, check, deadline, self.processes,
                                  retry_on=(urllib.error.URLError, ConnectionError, TimeoutError))

    def logs_on_failure(self) -> contextlib.AbstractContextManager[None]:
        """Print the worker's and Flower's logs if the block fails."""
        return workers.logs_on_failure(self.processes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(extra: dict[str, str]) -> dict[str, str]:
    # no FLOWER_* settings of the caller (FLOWER_UNAUTHENTICATED_API would open the API)
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return workers.subprocess_env(extra, [FLOWER_DIR, FLOWER_DIR.parent], base=base)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require("redis")
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("flower")  # also the cwd: no stray flowerconfig.py is read
    with database("postgresql", "durable_flower") as store_url:
        queue = f"durable-flower-{uuid.uuid4().hex[:8]}"
        node = f"{queue}@flower-test"
        password = uuid.uuid4().hex
        port = _free_port()
        _app, durable = fa.make_app(BROKER_URL, store_url, queue, name="durable-flower-client")
        env = _environment(fa.env_config(BROKER_URL, store_url, queue))
        app = "durable_flower_app:app"
        processes: list[workers.CeleryProcess] = []
        try:
            flower = workers.CeleryProcess("flower", app, [
                "flower", f"--port={port}", "--address=127.0.0.1",
                f"--basic-auth={USER}:{password}"], env=env, cwd=tmp,
                log_path=tmp / "flower.log", stop_timeout=STOP_TIMEOUT)
            processes.append(flower)
            worker = workers.WorkerProcess(app, node, options=["-E"], name="worker", env=env,
                                           cwd=tmp, log_path=tmp / "worker.log",
                                           stop_timeout=STOP_TIMEOUT)
            processes.append(worker)
            s = Setup(queue, node, f"http://127.0.0.1:{port}", password, durable,
                      worker=worker, flower=flower)
            with s.logs_on_failure():
                # ready: Flower answers, and its event receiver has heard our worker
                s.poll("Flower lists the worker alive",
                       lambda: (answer := s.get("/api/workers?status=1"))[0] == 200
                       and answer[1].get(node) is True,
                       started + READY_TIMEOUT)
            print(f"\nworker and Flower ready in {time.monotonic() - started:.1f}s")
            yield s
        finally:
            workers.stop_all(processes)
            durable.store.dispose()
            workers.delete_queue(BROKER_URL, queue)


def test_api_refuses_requests_without_valid_credentials(setup: Setup) -> None:
    with setup.logs_on_failure():
        for auth in (None, (USER, "wrong"), ("nobody", setup.password)):
            status, _ = setup.get("/api/tasks", auth=auth)
            assert status == 401, auth
        assert setup.get("/api/tasks")[0] == 200


def test_orchestration_and_activity_tasks_are_listed(setup: Setup) -> None:
    with setup.logs_on_failure():
        client = setup.durable.client
        started = time.monotonic()
        iid = client.schedule_new_orchestration(fa.ORCHESTRATOR, input=3)
        state = client.wait_for_orchestration_completion(iid, timeout=20)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        assert state.output == 1 + 4 + 9
        ran = time.monotonic() - started

        record = setup.durable.store.get_instance(iid)
        assert record is not None
        scheduled = [e for e in client.get_orchestration_history(iid)
                     if e.kind == "TaskScheduled"]
        expected = {f"{iid}:{record.execution_id[:8]}:{e.task_id}:{e.data['attempt']}": e.name
                    for e in scheduled}
        assert sorted(expected.values()) == [fa.SQUARE] * 3 + [fa.TOTAL]

        query = "/api/tasks?" + urllib.parse.urlencode({"workername": setup.node})

        def listed() -> dict[str, Any] | None:
            status, tasks = setup.get(query)
            assert status == 200, tasks
            episodes = [t for t in tasks.values() if t["name"] == EPISODE_TASK
                        and iid in (t["args"] or "") and fa.ORCHESTRATOR in (t["args"] or "")
                        and t["state"] == "SUCCESS"]
            done = [task_id for task_id in expected
                    if tasks.get(task_id, {}).get("state") == "SUCCESS"]
            return tasks if episodes and len(done) == len(expected) else None

        tasks = setup.poll("Flower lists the orchestration's tasks", listed,
                           time.monotonic() + SEEN_TIMEOUT)
        seen = time.monotonic() - started
        for task_id, name in expected.items():
            task = tasks[task_id]
            assert task["uuid"] == task_id
            assert task["name"] == name, task
            assert task["worker"] == setup.node, task
        results = sorted(tasks[t]["result"] for t, n in expected.items() if n == fa.SQUARE)
        assert results == ["1", "4", "9"]
        assert [tasks[t]["result"] for t, n in expected.items() if n == fa.TOTAL] == ["14"]
        ours = {t: {k: tasks[t][k] for k in ("name", "args", "kwargs", "state", "result", "runtime",
                                               "root_id", "parent_id", "children")}
                for t in tasks if t in expected or iid in (tasks[t]["args"] or "")}
        # Flower's free-text search also matches task ids: an instance id finds them all
        status, found = setup.get("/api/tasks?" + urllib.parse.urlencode(
            {"workername": setup.node, "search": iid}))
        assert status == 200, found
        assert set(expected) <= set(found), found
        assert any(t["name"] == EPISODE_TASK for t in found.values()), found
        assert {t["name"] for t in found.values()} == {EPISODE_TASK, fa.SQUARE, fa.TOTAL}
        print(f"orchestration done in {ran:.2f}s, listed by Flower after {seen:.2f}s:\n"
              + json.dumps(ours, indent=1))
