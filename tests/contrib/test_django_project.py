"""A real Django project (tests/django_project, Celery's "First steps with Django" layout) with a
real ``celery -A proj worker`` and ``manage.py runserver``: one fresh PostgreSQL database for
Django and the store (``CELERY_DURABLE_STORE_URL = store_url(DATABASES["default"])``), Redis as
the broker. Orchestrations start from a view inside ``transaction.atomic()`` and from
``manage.py shell``; a rollback leaves no instance; a process that dies right after the commit
still gets its instance started (by the sweeper)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from services import REDIS_URL, database, require, unique
from workers import (
    CeleryProcess,
    WorkerProcess,
    celery_app,
    delete_queue,
    logs_on_failure,
    stop_all,
    subprocess_env,
    wait_until,
)

from celery_durable import Durable, OrchestrationStatus

pytest.importorskip("django")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "django_project"
BROKER = f"{REDIS_URL}/14"


@dataclass
class Project:
    env: dict[str, str]
    base_url: str
    durable: Durable  # a client of the project's store, in this test process
    db: sa.Engine
    processes: list[Any]

    def post(self, query: str = "") -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.base_url}/orders/{query}", data=b"item=book",
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def shell(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=PROJECT,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=120, check=False)

    def completes(self, instance_id: str) -> Any:
        with logs_on_failure(self.processes):
            state = self.durable.client.wait_for_orchestration_completion(instance_id,
                                                                          timeout=60)
        assert state.runtime_status is OrchestrationStatus.COMPLETED, state
        return state.output

    def order_status(self, order_id: int) -> str | None:
        with self.db.connect() as conn:
            return conn.execute(sa.text("SELECT status FROM shop_order WHERE id = :id"),
                                {"id": order_id}).scalar()

    def orders(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM shop_order")).scalar_one())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # 405 on GET: the server is up
    except OSError:
        return False
    return True


class RunServer(CeleryProcess):
    """``manage.py runserver`` on ``port``, stopped as a worker is (`CeleryProcess.stop`)."""

    def __init__(self, port: int, *, env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path, self.stop_timeout = "runserver", log_path, 10.0
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=PROJECT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    require("redis")
    tmp = tmp_path_factory.mktemp("django")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database("postgresql", "durable_django"))
        queue = unique("durable-django")
        stack.callback(delete_queue, BROKER, queue)
        env = subprocess_env({"SHOP_DB_NAME": str(sa.make_url(url).database),
                              "SHOP_BROKER_URL": BROKER, "SHOP_QUEUE": queue,
                              "DJANGO_SETTINGS_MODULE": "proj.settings"}, [PROJECT, ROOT])
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"],
                                 cwd=PROJECT, env=env, capture_output=True, text=True,
                                 timeout=120, check=False)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        worker = WorkerProcess("proj", f"django-{queue}@localhost", env=env, cwd=PROJECT,
                               log_path=tmp / "worker.log", concurrency=2)
        port = _free_port()
        server = RunServer(port, env=env, log_path=tmp / "server.log")
        processes = [worker, server]
        stack.callback(stop_all, processes)
        base_url = f"http://127.0.0.1:{port}"
        with logs_on_failure(processes):
            wait_until("the worker is ready", lambda: " ready." in worker.log(),
                       time.monotonic() + 60, processes)
            wait_until("runserver answers", lambda: _answers(f"{base_url}/orders/"),
                       time.monotonic() + 60, processes)
        durable = Durable(celery_app("django-client", BROKER, queue), store_url=url)
        stack.callback(durable.store.dispose)
        db = sa.create_engine(url)
        stack.callback(db.dispose)
        yield Project(env, base_url, durable, db, processes)


def test_a_view_starts_an_orchestration_when_its_transaction_commits(project: Project) -> None:
    status, answer = project.post()
    assert status == 200, project.processes[1].log()
    assert project.completes(answer["instance_id"]) == f"order {answer['order']} shipped"
    assert project.order_status(answer["order"]) == "shipped"  # the activity used the ORM


def test_a_view_that_rolls_back_starts_nothing(project: Project) -> None:
    before = project.orders()
    instance_id = uuid.uuid4().hex
    status, _ = project.post(f"?fail=1&instance_id={instance_id}")
    assert status == 500
    assert project.orders() == before  # Django rolled the order back ...
    assert project.durable.client.get_orchestration_state(instance_id) is None  # ... and this
    time.sleep(1.5)  # three sweeps: nothing to recover either
    assert project.durable.client.get_orchestration_state(instance_id) is None
    # the same id is free: the rolled-back start left nothing behind
    status, answer = project.post(f"?instance_id={instance_id}")
    assert (status, answer["instance_id"]) == (200, instance_id)
    project.completes(instance_id)


def test_manage_py_shell_starts_an_orchestration(project: Project) -> None:
    proc = project.shell(
        "from proj.celery import durable; from shop.models import Order; "
        "from shop.tasks import fulfil; order = Order.objects.create(item='pen'); "
        "print(durable.client.schedule_new_orchestration(fulfil, input=order.pk))")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    instance_id = proc.stdout.strip().splitlines()[-1]
    assert project.completes(instance_id).endswith(" shipped")


def test_a_process_that_dies_after_the_commit_still_gets_its_instance_started(
        project: Project) -> None:
    # an on_commit callback registered first runs first: it kills the process after the
    # commit, before the wake-up is sent; the instance waits in the store, the sweeper of the
    # worker starts it
    proc = project.shell(
        "import os; from django.db import transaction; from proj.celery import durable; "
        "from shop.models import Order; from shop.tasks import fulfil\n"
        "with transaction.atomic():\n"
        "    transaction.on_commit(lambda: os._exit(3))\n"
        "    order = Order.objects.create(item='lamp')\n"
        "    print(durable.client.schedule_new_orchestration(fulfil, input=order.pk), "
        "flush=True)\n")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    instance_id = proc.stdout.strip().splitlines()[-1]
    state = project.durable.client.get_orchestration_state(instance_id)
    assert state is not None  # committed with the order
    assert project.completes(instance_id).endswith(" shipped")


def test_celery_durable_settings_come_from_django_settings(project: Project) -> None:
    # CELERY_DURABLE_* through config_from_object("django.conf:settings", namespace="CELERY")
    proc = project.shell("from proj.celery import durable; s = durable.settings; "
                         "print(s.store_url); print(s.sweep_interval, s.recovery_grace)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    url, timings = proc.stdout.strip().splitlines()[-2:]
    assert sa.make_url(url).database == sa.make_url(project.durable.store.url).database
    assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/")
    assert timings == "0.5 0:00:02"


def test_a_store_on_another_database_waits_for_the_commit(project: Project,
                                                          tmp_path: Path) -> None:
    # the start is deferred with transaction.on_commit: nothing exists before the commit,
    # nothing at all after a rollback
    proc = project.shell(
        "from django.db import transaction; from proj.celery import durable; "
        "from shop.tasks import fulfil; client = durable.client\n"
        "with transaction.atomic():\n"
        "    kept = client.schedule_new_orchestration(fulfil, input=1)\n"
        "    assert client.get_orchestration_state(kept) is None\n"
        "assert client.get_orchestration_state(kept) is not None\n"
        "try:\n"
        "    with transaction.atomic():\n"
        "        lost = client.schedule_new_orchestration(fulfil, input=2)\n"
        "        raise KeyError\n"
        "except KeyError:\n"
        "    pass\n"
        "assert client.get_orchestration_state(lost) is None\n"
        "print('ok')\n",
        SHOP_STORE_URL=f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_manage_py_test_runs_the_test_environment_in_a_django_testcase(project: Project) -> None:
    proc = subprocess.run([sys.executable, "manage.py", "test", "shop", "--noinput"],
                          cwd=PROJECT, env=project.env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ran 2 tests" in proc.stderr
