"""Private Redis and PostgreSQL servers that a test may stop and start (the shared ones on the
standard ports are never restarted: other tests use them).

`private_redis` runs ``redis-server`` on a free port without snapshots; `PrivateRedis.restart`
shuts it down saving its data (``SHUTDOWN SAVE``: a clean broker restart, messages kept) and
starts it again on the same port. `private_rabbitmq` runs a RabbitMQ node of its own (its own
node name, port, data and configuration; as the ``rabbitmq`` user when the tests run as root);
`PrivateRabbitMQ.restart` stops the node (``rabbitmqctl stop``: durable queues and persistent
messages are kept) and starts it again on the same port. `private_postgres` runs a throw-away cluster made with
``initdb`` (as the ``postgres`` user when the tests run as root); `PrivatePostgres.restart`
stops it with the given ``pg_ctl`` mode (``fast``: connections dropped; ``immediate``: a crash)
and starts it again.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, up: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'} in {timeout}s")


def _server_user(name: str) -> str | None:
    """The user to run a private server as: ``name`` when the tests run as root (the servers
    refuse root), else None (the current user)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name).pw_name
    except KeyError:
        pytest.skip(f"running as root and there is no {name} user to run a private server")


class _Server:
    """What the private servers share: a restart is a stop, some time down, and a start."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self, down: float = 0.0, **stop: Any) -> None:
        """Stop (``stop``: the server's stop options), stay down ``down`` seconds (the outage
        under test), start again on the same port."""
        self.stop(**stop)
        time.sleep(down)
        self.start()


@dataclass
class PrivateRedis(_Server):
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115  (the server holds it)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait_port(self.port, up=True)

    def stop(self, save: bool = True) -> None:
        """``SHUTDOWN SAVE`` (its data is kept for the next start) or ``NOSAVE``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.exceptions.ConnectionError):
            self.client().shutdown(save=save, nosave=not save)
        self.proc.wait(timeout=30)
        _wait_port(self.port, up=False)


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="durable-redis-") as folder:
        server = PrivateRedis(free_port(), Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop(save=False)


@dataclass
class PrivatePostgres(_Server):
    port: int
    data: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        self._pg_ctl("-l", str(self.data / "server.log"), "-o",
                     f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                     "-c fsync=off -c max_connections=200", "start")
        _wait_port(self.port, up=True)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A throw-away PostgreSQL 15 cluster on a free port (trust authentication)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries are not in {PG_BIN}")
    user = _server_user("postgres")
    folder = Path(tempfile.mkdtemp(prefix="durable-pg-"))
    data = folder / "data"
    try:
        if user:
            shutil.chown(folder, user)
        command = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                   "--no-sync"]
        if user:
            command = ["runuser", "-u", user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        server = PrivatePostgres(free_port(), data, user)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(Exception):
                server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class PrivateRabbitMQ(_Server):
    port: int
    folder: Path
    user: str | None

    @property
    def node(self) -> str:
        return f"durable{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _run(self, program: str, *args: str, detach: bool = False) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": str(Path(pwd.getpwnam(self.user).pw_dir)) if self.user
               else os.environ.get("HOME", "/root"),
               "RABBITMQ_NODENAME": self.node,
               "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
               "RABBITMQ_DIST_PORT": str(self.port + 1 if self.port < 65000 else self.port - 1),
               "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.folder / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
               "RABBITMQ_PID_FILE": str(self.folder / "pid")}
        command = [str(RABBITMQ_BIN / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", "env", *(f"{k}={v}" for k, v in
                                                                env.items()), *command]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=120,
                       cwd=self.folder)

    def start(self) -> None:
        self._run("rabbitmq-server", "-detached")
        _wait_port(self.port, up=True, timeout=90)

    def stop(self) -> None:
        """``rabbitmqctl stop``: the node ends; its durable queues and messages stay on disk."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("rabbitmqctl", "-n", self.node, "stop")
        _wait_port(self.port, up=False)


@contextlib.contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of its own on a free port (no plugins, guest allowed from anywhere)."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        pytest.skip(f"RabbitMQ is not in {RABBITMQ_BIN}")
    user = _server_user("rabbitmq")
    folder = Path(tempfile.mkdtemp(prefix="durable-rabbitmq-"))
    port = free_port()
    (folder / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n")
    (folder / "enabled_plugins").write_text("[].\n")
    for sub in ("mnesia", "log"):
        (folder / sub).mkdir()
    if user:
        for path in (folder, *folder.rglob("*")):
            shutil.chown(path, user)
    server = PrivateRabbitMQ(port, folder, user)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
