"""Private Redis and PostgreSQL servers that a test may stop and start (the shared ones on the
standard ports are never restarted: other tests use them).

`private_redis` runs ``redis-server`` on a free port without snapshots; `PrivateRedis.restart`
shuts it down saving its data (``SHUTDOWN SAVE``: a clean broker restart, messages kept) and
starts it again on the same port. `private_postgres` runs a throw-away cluster made with
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


@dataclass
class PrivateRedis:
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

    def restart(self, down: float = 0.0) -> None:
        """Stop (saving), stay down ``down`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down)
        self.start()


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
class PrivatePostgres:
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

    def restart(self, mode: str = "fast", down: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down)
        self.start()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A throw-away PostgreSQL 15 cluster on a free port (trust authentication)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries are not in {PG_BIN}")
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run a private server")
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
