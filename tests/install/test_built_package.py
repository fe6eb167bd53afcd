"""The package as a user installs it, away from this repository.

Builds the sdist and, from the sdist, the wheel (``python -m build``), installs the wheel with the
``redis,postgres,ui`` extras into a fresh virtual environment outside the repository (pip is run
from this environment with ``--python``, so the new one holds no pip and no test tool), and there,
from a temporary folder with a clean environment (no ``PYTHONPATH``), runs a real ``celery
worker`` on Redis with a small app whose store is a fresh PostgreSQL database, the ``celery
durable`` CLI (``start --wait``, ``list``, ``show``) and the dashboard (``durable ui``).

The suite's own environment hides what a user's lacks (pytest brings ``packaging``, which kombu
5.7's Redis transport imports), and it imports the package from the checkout, where the data files
(migrations, templates, static files) are always present: only a build installed elsewhere shows
what the sdist and the wheel really carry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from services import REDIS_URL, database, require
from workers import CeleryProcess, delete_queue, logs_on_failure, stop_all, wait_until

#: the first test also builds, and installs from the index (a fresh machine downloads every
#: dependency): more than the suite's 300 s may be needed there
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "celery_durable"
APP_SOURCE = Path(__file__).with_name("installed_app.py")
BROKER = f"{REDIS_URL}/11"
EXTRAS = "redis,postgres,ui"
#: what the build leaves out of its copy of the checkout: what git ignores (a stale *.egg-info
#: would add the files its SOURCES.txt lists to the sdist) and the version control itself
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", "site", "*.sqlite3*", ".broker", ".example",
    "celery_broker")
#: each step's duration in seconds, printed at the end of the module (``pytest -s`` shows it)
TIMINGS: dict[str, float] = {}


def package_files() -> set[str]:
    """Every file of the package's source folder, as a path relative to the checkout."""
    return {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def run(command: Sequence[str], *, env: Mapping[str, str], cwd: Path,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output unless it exits 0."""
    proc = subprocess.run(list(command), env=dict(env), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{command} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def without_python_variables() -> dict[str, str]:
    """This process's environment less every ``PYTHON*`` variable (``PYTHONPATH`` would put the
    checkout on the path); pip keeps its own ``PIP_*`` settings (index, certificates)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


class Timed:
    def __init__(self, step: str) -> None:
        self.step = step

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.step] = time.monotonic() - self.start


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\ninstall test timings: " + ", ".join(f"{step} {seconds:.1f} s"
                                                 for step, seconds in TIMINGS.items()))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built by ``python -m build`` from a copy of the checkout; the wheel is
    built from the sdist, so it can only carry what the sdist does."""
    pytest.importorskip("build", reason="the test extra's `build` is not installed")
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    with Timed("build sdist+wheel"):
        run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)],
            env=without_python_variables(), cwd=work)
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment without pip, holding the wheel with ``[redis,postgres,ui]``
    and what those need, nothing else."""
    _, wheel = dist
    home = tmp_path_factory.mktemp("venv")
    assert not home.is_relative_to(ROOT)
    with Timed("fresh venv + pip install"):
        run([sys.executable, "-m", "venv", "--without-pip", str(home)],
            env=without_python_variables(), cwd=home)
        run([sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install",
             "--no-input", "--disable-pip-version-check", f"{wheel}[{EXTRAS}]"],
            env=without_python_variables(), cwd=home, timeout=600)
    return home


def clean_env(venv: Path, home: Path, **extra: str) -> dict[str, str]:
    """A user's shell in ``venv``: its ``bin`` first on the PATH, no ``PYTHON*`` variable."""
    return {"PATH": os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **extra}


def test_sdist_and_wheel_carry_every_package_file(dist: tuple[Path, Path]) -> None:
    sdist, wheel = dist
    expected = package_files()
    assert {"celery_durable/py.typed", "celery_durable/store/migrations/env.py",
            "celery_durable/store/migrations/script.py.mako",
            "celery_durable/ui/templates/instances.html",
            "celery_durable/ui/static/instances.js"} <= expected
    assert any(name.startswith("celery_durable/store/migrations/versions/") for name in expected)
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(top + "/") for name in archive.getnames()}
    assert expected - in_sdist == set(), "files of the package missing from the sdist"
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = next(name for name in in_wheel if name.endswith(".dist-info/METADATA"))
        requires = [line for line in archive.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    assert expected - in_wheel == set(), "files of the package missing from the wheel"
    # the Redis transport's imports come with kombu's own extra (kombu 5.7 imports packaging)
    assert any(line.startswith("Requires-Dist: kombu[redis]") and 'extra == "redis"' in line
               for line in requires), requires


def test_installed_package_comes_from_the_wheel_without_test_tools(
        venv: Path, tmp_path: Path) -> None:
    env = clean_env(venv, tmp_path)
    python = str(venv / "bin" / "python")
    found = run([python, "-c", "import celery_durable, sys; print(celery_durable.__file__); "
                               "print(sys.path)"], env=env, cwd=tmp_path)
    location = Path(found.stdout.splitlines()[0]).parent
    assert location.is_relative_to(venv), location  # not the checkout
    assert str(ROOT) not in found.stdout.splitlines()[1]
    installed = {"celery_durable/" + path.relative_to(location).as_posix()
                 for path in location.rglob("*")
                 if path.is_file() and "__pycache__" not in path.parts}
    assert package_files() - installed == set(), "files of the package not installed"
    for tool in ("pytest", "pip", "build", "hypothesis"):
        probe = subprocess.run([python, "-c", f"import {tool}"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, check=False)
        assert probe.returncode != 0, f"{tool} is importable in the fresh environment"


class VenvCelery(CeleryProcess):
    """``<venv>/bin/celery -A installed_app *args``: the fresh environment's console script,
    started as `CeleryProcess` starts its own (a session of its own, output to ``log_path``)."""

    def __init__(self, name: str, venv: Path, args: Sequence[str], *, env: Mapping[str, str],
                 cwd: Path, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_timeout = 20.0
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in wait())
        self.proc = subprocess.Popen([str(venv / "bin" / "celery"), "-A", "installed_app",
                                      *args], cwd=cwd, env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode("utf-8", "replace")


def test_worker_cli_and_dashboard_in_the_fresh_environment(venv: Path, tmp_path: Path) -> None:
    require("redis")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(APP_SOURCE, project / "installed_app.py")
    queue = f"durable-install-{uuid.uuid4().hex[:8]}"
    processes: list[CeleryProcess] = []
    started = time.monotonic()
    with database("postgresql", "durable_install") as store_url:
        env = clean_env(venv, tmp_path, INSTALLED_BROKER_URL=BROKER, INSTALLED_QUEUE=queue,
                        INSTALLED_STORE_URL=store_url)

        def celery(*args: str) -> subprocess.CompletedProcess[str]:
            return run([str(venv / "bin" / "celery"), "-A", "installed_app", *args], env=env,
                       cwd=project, timeout=120)

        try:
            worker = VenvCelery("worker", venv, [
                "worker", "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
                "--hostname", f"install-{queue}@%h", "--without-gossip", "--without-mingle"],
                env=env, cwd=project, log_path=tmp_path / "worker.log")
            processes.append(worker)
            with logs_on_failure(processes):
                wait_until("the worker is ready", lambda: " ready." in worker.log(),
                           time.monotonic() + 60, processes)
                state = json.loads(celery("durable", "start", "installed.hello", "--input",
                                          '"pip"', "--wait", "60", "--json").stdout)
                assert state["status"] == "COMPLETED", state
                assert state["output"] == "Hello, pip!"
                iid = state["instance_id"]

                listed = celery("durable", "list").stdout
                assert any(line.startswith(iid) and "COMPLETED" in line
                           and "installed.hello" in line for line in listed.splitlines()), listed
                shown = celery("durable", "show", iid).stdout
                assert "instance id:" in shown and iid in shown, shown
                assert "COMPLETED" in shown and "Hello, pip!" in shown, shown

                port = free_port()
                dashboard = VenvCelery("dashboard", venv, ["durable", "ui", "--port", str(port)],
                                       env=env, cwd=project, log_path=tmp_path / "ui.log")
                processes.append(dashboard)
                base = f"http://127.0.0.1:{port}"
                status, page = wait_until(
                    "the dashboard answers", lambda: http_get(base + "/"),
                    time.monotonic() + 30, processes,
                    retry_on=(urllib.error.URLError, ConnectionError))
                assert status == 200 and "Orchestration instances" in page, page
                status, script = http_get(base + "/static/instances.js")
                assert status == 200 and script, "the dashboard's static files are served"
                status, body = http_get(base + "/api/instances")
                assert status == 200 and iid in body, body
                status, page = http_get(f"{base}/instances/{iid}")
                assert status == 200 and iid in page, page
        finally:
            stop_all(processes)
            delete_queue(BROKER, queue)
    TIMINGS["worker + CLI + dashboard"] = time.monotonic() - started
