"""Real ``celery worker`` (and other ``celery``) subprocesses for the tests that need them.

A test starts ``python -m celery -A <module> ...`` as a `CeleryProcess` (a worker: `WorkerProcess`)
with the environment `subprocess_env` builds, waits with `wait_until` for it to be ready, wraps its
checks in `logs_on_failure` (a failing test prints every log), and ends with `stop_all`. The app
module the subprocess loads builds its Celery app with `celery_app` and, so that the test process
can import it without building one, exposes ``app`` and ``durable`` through a `LazyApp`.

Every subprocess leads a session (process group) of its own: stopping it is a warm shutdown
(SIGTERM) and a wait, then SIGKILL to that group, which only this test process started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu import Connection

if TYPE_CHECKING:
    from celery_durable import Durable

#: how long `CeleryProcess.wait` waits for the process group it killed
KILL_TIMEOUT = 10.0


def subprocess_env(extra: Mapping[str, str], paths: Sequence[Path],
                   base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess: ``base`` (default ``os.environ``) updated with ``extra``,
    ``paths`` put before its ``PYTHONPATH`` (so that ``-A module`` and the modules it imports are
    found) and ``PYTHONUNBUFFERED=1`` (so that its output reaches the log file at once)."""
    env = {**(os.environ if base is None else base), **extra}
    inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([str(path) for path in paths] + inherited)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class CeleryProcess:
    """One ``python -m celery -A <app> *args`` subprocess, started at once in a session of its
    own, with stdout and stderr in the file ``log_path``.

    ``name`` names it in messages; ``stop_timeout``: how long `wait` lets a warm shutdown take
    before it kills the process group.
    """

    def __init__(self, name: str, app: str, args: Sequence[str], *, env: Mapping[str, str],
                 cwd: Path, log_path: Path, stop_timeout: float = 20.0) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        command = [sys.executable, "-m", "celery", "-A", app, *args]
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in wait())
        self.proc = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Raise RuntimeError, with the log, if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}; its log:\n{self.log()}")

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM) unless the process has exited already."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait(self) -> None:
        """Wait ``stop_timeout`` for the process to end, then SIGKILL its process group (the one
        this test started) and wait for that; close the log file."""
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=KILL_TIMEOUT)
        self._log.close()

    def stop(self) -> None:
        """`terminate`, then `wait`."""
        self.terminate()
        self.wait()


class WorkerProcess(CeleryProcess):
    """A ``celery -A <app> worker`` subprocess named ``node`` (its ``--hostname``): a ``pool``
    of ``concurrency``, log level INFO, without gossip and mingle; ``options`` adds to that
    command line. ``name`` defaults to ``worker <node>``."""

    def __init__(self, app: str, node: str, *, env: Mapping[str, str], cwd: Path,
                 log_path: Path, pool: str = "prefork", concurrency: int = 2,
                 options: Sequence[str] = (), name: str | None = None,
                 stop_timeout: float = 20.0) -> None:
        self.node = node
        args = ["worker", "--pool", pool, "--concurrency", str(concurrency), "--loglevel",
                "INFO", "--hostname", node, "--without-gossip", "--without-mingle", *options]
        super().__init__(name or f"worker {node}", app, args, env=env, cwd=cwd,
                         log_path=log_path, stop_timeout=stop_timeout)


def stop_all(processes: Iterable[CeleryProcess]) -> None:
    """Stop all at once: SIGTERM to every one, then wait for each (a warm shutdown takes
    seconds)."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()


def print_logs(processes: Iterable[CeleryProcess]) -> None:
    """Print every process's log under a header (pytest shows it in a failing test's report)."""
    for process in processes:
        print(f"\n===== log of {process.name} ({process.log_path}) =====")
        print(process.log())


@contextlib.contextmanager
def logs_on_failure(processes: Iterable[CeleryProcess]) -> Iterator[None]:
    """`print_logs` of ``processes`` (read when the block fails) if the block raises."""
    try:
        yield
    except BaseException:
        print_logs(processes)
        raise


def wait_until(what: str | Callable[[], str], check: Callable[[], Any], deadline: float,
               processes: Iterable[CeleryProcess] = (), *, interval: float = 0.1,
               retry_on: tuple[type[Exception], ...] = ()) -> Any:
    """Call ``check`` until it returns something truthy, and return that.

    Before each call every one of ``processes`` must be alive (`CeleryProcess.check_alive`); an
    exception of a ``retry_on`` type counts as a falsy answer. Once ``time.monotonic()`` has
    passed ``deadline``, raise TimeoutError naming ``what`` (or what it returns, if callable)
    and the last answer; ``interval``: the sleep between calls.
    """
    processes = list(processes)
    last: Any = None
    while True:
        for process in processes:
            process.check_alive()
        try:
            last = check()
        except retry_on as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            name = what() if callable(what) else what
            raise TimeoutError(f"{name}: not within the deadline; last answer: {last!r}")
        if interval:
            time.sleep(interval)


def delete_queue(broker_url: str, queue: str,
                 transport_options: Mapping[str, Any] | None = None) -> None:
    """Delete a test's queue from its broker, best effort (nothing to do on ``filesystem://``,
    whose folder goes with the test's temporary directory)."""
    if broker_url.startswith("filesystem"):
        return
    with contextlib.suppress(Exception), Connection(
            broker_url, transport_options=dict(transport_options or {}),
            connect_timeout=5) as conn:
        conn.default_channel.queue_delete(queue)


def celery_app(name: str, broker_url: str, queue: str, **conf: Any) -> Celery:
    """A Celery app as the worker subprocesses (and their tests' clients) use it: every task on
    ``queue``, late acks, one message prefetched, no results, the worker's own logging; ``conf``
    adds settings (``durable_sweep_interval``, ...) or overrides these."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update({
        "task_default_queue": queue, "task_acks_late": True, "worker_prefetch_multiplier": 1,
        "result_backend": None, "task_ignore_result": True,
        "broker_connection_retry_on_startup": True, "worker_hijack_root_logger": True, **conf})
    return app


class LazyApp:
    """The ``app`` and ``durable`` of a module that ``celery -A <module>`` loads, built by
    ``build`` (typically from environment variables) on first access, so that the test process
    can import the module's other names without building one.

    Assign it to the module's ``__getattr__`` (PEP 562): ``__getattr__ = LazyApp(__name__,
    build)``; `built` is the (app, durable) pair once built.
    """

    def __init__(self, module: str, build: Callable[[], tuple[Celery, Durable]]) -> None:
        self.module = module
        self.build = build
        self.built: tuple[Celery, Durable] | None = None

    def __call__(self, name: str) -> Any:
        if name not in ("app", "durable"):
            raise AttributeError(f"module {self.module!r} has no attribute {name!r}")
        if self.built is None:
            self.built = self.build()
        return self.built[0] if name == "app" else self.built[1]
