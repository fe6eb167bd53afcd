"""The ``filesystem://`` consumer is told of new messages (inotify on Linux) instead of polling.

Every consumer here polls every 5 seconds at most (``polling_interval``), so a message that
arrives well within a second was announced: by the kernel, by a publish in the same process, or
by an ack that made room under the prefetch limit. Real kombu connections, real processes (spawned
and forked), a real ``celery worker`` subprocess.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import chain
from kombu import Connection, Exchange, Queue
from kombu import transport as kombu_transports
from kombu.transport import filesystem as kombu_filesystem
from workers import WorkerProcess, celery_app, logs_on_failure, stop_all, subprocess_env, wait_until

from celery_durable.runtime import folder_watch
from celery_durable.runtime.filesystem import install

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

RUNTIME_DIR = Path(__file__).resolve().parent
TESTS_DIR = RUNTIME_DIR.parent
EXCHANGE = Exchange("fs-notify", type="direct")
QUEUE_A = Queue("fs-notify-a", EXCHANGE, routing_key="a")
QUEUE_B = Queue("fs-notify-b", EXCHANGE, routing_key="b")
POLLING = 5.0  #: seconds between polls: far longer than any delivery below may take
PROMPT = 1.0  #: a delivery within this many seconds was announced, not polled
SPAWN = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kombu_transports.TRANSPORT_ALIASES, "filesystem",
                        "kombu.transport.filesystem:Transport")
    monkeypatch.setitem(kombu_transports._transport_cache, "filesystem", kombu_filesystem.Transport)
    install()


def options(folder: Path, **extra: Any) -> dict[str, Any]:
    (folder / "queue").mkdir(parents=True, exist_ok=True)
    (folder / "control").mkdir(exist_ok=True)
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"), "polling_interval": POLLING, **extra}


def publish(conn: Connection, queue: Queue, body: Any) -> None:
    conn.Producer(serializer="json").publish(body, exchange=EXCHANGE,
                                             routing_key=queue.routing_key, declare=[queue])


def inotify_fds() -> list[int]:
    """This process's open inotify descriptors."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                found.append(int(name))
        except OSError:
            continue  # the descriptor listdir itself used
    return found


def receiver(conn: Connection, queue: Queue, **consumer: Any) -> tuple[list[Any], Any]:
    """A consumer of ``queue`` on ``conn``, the (arrival time, body, message) list it fills."""
    received: list[Any] = []
    consumer_ = conn.Consumer([queue], accept=["json"], **consumer,
                              callbacks=[lambda body, message: received.append(
                                  (time.time(), body, message))])
    return received, consumer_


def drain_once(conn: Connection, timeout: float) -> None:
    """One ``drain_events``; a timeout is not an error here."""
    with contextlib.suppress(TimeoutError):
        conn.drain_events(timeout=timeout)


# -- another process publishes -----------------------------------------------------------------

def publish_when_told(folder: str, inotify: bool, ready: Any, go: Any) -> None:
    """Spawned publisher: connect, say so, and publish one time-stamped message 0.2 s after go."""
    install()
    with Connection("filesystem://", transport_options=options(Path(folder),
                                                               inotify=inotify)) as conn:
        ready.set()
        go.wait(30)
        time.sleep(0.2)
        publish(conn, QUEUE_A, {"sent": time.time()})


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_a_message_from_another_process(tmp_path: Path, inotify: bool) -> None:
    """inotify: delivered at once although the consumer polls every 5 s. ``"inotify": False``:
    the same consumer polls; it finds the message only when its wait (2 s here) ends."""
    with Connection("filesystem://", transport_options=options(tmp_path,
                                                               inotify=inotify)) as conn:
        received, consumer = receiver(conn, QUEUE_A, no_ack=True)
        with consumer:
            drain_once(conn, 0.01)  # the watch exists, the queue was scanned once
            watch = conn.transport._watch
            assert isinstance(watch, folder_watch.InotifyWatch if inotify
                              else folder_watch.PollingWatch)
            ready, go = SPAWN.Event(), SPAWN.Event()
            proc = SPAWN.Process(target=publish_when_told,
                                 args=(str(tmp_path), inotify, ready, go))
            proc.start()
            try:
                assert ready.wait(60), "publisher did not start"
                go.set()
                started = time.time()
                conn.drain_events(timeout=2.0)
            finally:
                proc.join(30)
    assert proc.exitcode == 0
    ((arrived, body, _),) = received
    if inotify:
        assert arrived - body["sent"] < PROMPT
    else:
        assert arrived - started >= 1.9  # not before the wait ended: nothing told it


def test_a_publish_in_the_same_process_wakes_a_polling_consumer(tmp_path: Path) -> None:
    transport_options = options(tmp_path, inotify=False)
    with Connection("filesystem://", transport_options=transport_options) as conn, \
            Connection("filesystem://", transport_options=transport_options) as producer:
        received, consumer = receiver(conn, QUEUE_A, no_ack=True)
        with consumer:
            drain_once(conn, 0.01)
            sender = threading.Timer(0.2, lambda: publish(producer, QUEUE_A, {"sent": time.time()}))
            sender.start()
            conn.drain_events(timeout=POLLING - 1)
            sender.join()
    ((arrived, body, _),) = received
    assert arrived - body["sent"] < PROMPT


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_an_ack_wakes_a_consumer_held_by_its_prefetch_limit(tmp_path: Path, inotify: bool) -> None:
    with Connection("filesystem://", transport_options=options(tmp_path,
                                                               inotify=inotify)) as conn:
        received, consumer = receiver(conn, QUEUE_A, prefetch_count=1)
        with consumer:
            publish(conn, QUEUE_A, "first")
            publish(conn, QUEUE_A, "second")
            conn.drain_events(timeout=2.0)
            ((_, body, first),) = received
            assert body == "first"
            drain_once(conn, 0.2)
            assert len(received) == 1  # held back: one unacknowledged message at most
            acked_at: list[float] = []
            acker = threading.Timer(0.2, lambda: (first.ack(), acked_at.append(time.time())))
            acker.start()
            conn.drain_events(timeout=POLLING - 1)
            acker.join()
    (_, (arrived, body, _)) = received
    assert body == "second"
    assert arrived - acked_at[0] < PROMPT


# -- fork ----------------------------------------------------------------------------------------

def forked_consumer(conn_b: Connection, results: Any, ready: Any) -> None:
    """Fork child: report the inotify descriptors it inherited, receive on the connection the
    parent made (and watched), then answer on queue A."""
    results.put(("inherited", len(inotify_fds())))
    received, consumer = receiver(conn_b, QUEUE_B, no_ack=True)
    with consumer:
        ready.set()
        drain_once(conn_b, 10)
    results.put(("received", [(arrived, body) for arrived, body, _ in received]))
    publish(conn_b, QUEUE_A, {"sent": time.time()})


def test_fork_children_watch_on_their_own(tmp_path: Path) -> None:
    """A fork child closes the watches it inherits and makes its own; the parent's keeps working."""
    transport_options = options(tmp_path)
    before = set(inotify_fds())  # earlier tests of the session may hold watches of their own
    with Connection("filesystem://", transport_options=transport_options) as conn_a, \
            Connection("filesystem://", transport_options=transport_options) as conn_b:
        received, consumer = receiver(conn_a, QUEUE_A, no_ack=True)
        with consumer:
            QUEUE_B(conn_b.default_channel).declare()
            drain_once(conn_a, 0.01)
            drain_once(conn_b, 0.01)  # the child inherits a transport with a watch
            parent_fds = set(inotify_fds()) - before
            assert len(parent_fds) == 2
            results, ready = FORK.Queue(), FORK.Event()
            child = FORK.Process(target=forked_consumer, args=(conn_b, results, ready))
            child.start()
            try:
                assert ready.wait(30), "child did not start consuming"
                time.sleep(0.2)  # the child waits on its watch
                sent = time.time()
                publish(conn_a, QUEUE_B, {"sent": sent})
                conn_a.drain_events(timeout=POLLING - 1)  # the child's answer
                child_results = dict(results.get(timeout=10) for _ in range(2))
            finally:
                child.join(30)
            assert child.exitcode == 0
            assert parent_fds <= set(inotify_fds())  # the parent's watches are still open
    assert child_results["inherited"] == 0
    ((arrived, body),) = child_results["received"]
    assert arrived - body["sent"] < PROMPT
    ((arrived, body, _),) = received
    assert arrived - body["sent"] < PROMPT


# -- the watch itself ----------------------------------------------------------------------------

def test_closing_the_watch_and_the_connection_releases_the_descriptors(tmp_path: Path) -> None:
    before = inotify_fds()
    watch = folder_watch.watch(str(tmp_path), suffix=".msg")
    assert isinstance(watch, folder_watch.InotifyWatch)
    fds = watch.fds
    for fd in fds:
        os.fstat(fd)
    (tmp_path / "x.tmp").write_text("")
    assert watch.wait(0.2) is False  # not a name it watches for
    (tmp_path / "y.msg").write_text("")
    assert watch.wait(PROMPT) is True
    watch.wake()
    assert watch.wait(PROMPT) is True
    watch.close()
    watch.close()
    watch.wake()  # after close: nothing to wake, no error
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert inotify_fds() == before

    with Connection("filesystem://", transport_options=options(tmp_path)) as conn:
        _, consumer = receiver(conn, QUEUE_A, no_ack=True)
        with consumer:
            drain_once(conn, 0.01)
            assert len(inotify_fds()) == len(before) + 1
    assert inotify_fds() == before

    dropped = folder_watch.watch(str(tmp_path))  # never closed: collected
    assert len(inotify_fds()) == len(before) + 1
    del dropped
    gc.collect()
    assert inotify_fds() == before


def test_without_inotify_the_watch_polls_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=folder_watch.__name__):
        missing = folder_watch.watch(str(tmp_path / "missing"))
        turned_off = folder_watch.watch(str(tmp_path), inotify=False)
    assert isinstance(missing, folder_watch.PollingWatch)
    assert isinstance(turned_off, folder_watch.PollingWatch)
    assert "inotify unavailable" in caplog.text and "No such file" in caplog.text
    assert "inotify turned off" in caplog.text
    started = time.monotonic()
    assert turned_off.wait(0.1) is False
    assert time.monotonic() - started >= 0.09
    folder_watch.notify_written(str(tmp_path))
    assert turned_off.wait(PROMPT) is True
    for each in (missing, turned_off):
        each.close()


# -- a real worker ------------------------------------------------------------------------------

def test_a_worker_runs_a_chain_without_waiting_for_polls(tmp_path: Path) -> None:
    """``celery worker --pool prefork``: each step is published by a pool process and consumed
    by the worker's main process; no step waits for the 5 s poll."""
    steps = 10
    queue = f"fs-notify-{uuid.uuid4().hex[:8]}"
    transport_options = options(tmp_path)
    stamps = tmp_path / "stamps"
    env = {"FS_NOTIFY_OPTIONS": json.dumps(transport_options), "FS_NOTIFY_QUEUE": queue}
    worker = WorkerProcess("fs_notify_app:app", f"{queue}@notify",
                           env=subprocess_env(env, [RUNTIME_DIR, TESTS_DIR]), cwd=RUNTIME_DIR,
                           log_path=tmp_path / "worker.log")
    app = celery_app("fs-notify-client", "filesystem://", queue,
                     broker_transport_options=transport_options)
    try:
        with logs_on_failure([worker]):
            ready = tmp_path / "ready"
            app.send_task("fs_notify.stamp", (str(ready), 0))
            wait_until("the worker's first task", ready.exists, time.monotonic() + 60,
                       [worker], interval=0.05)
            sent = time.time()
            chain(*[app.signature("fs_notify.stamp", (str(stamps), i), immutable=True)
                    for i in range(steps)]).apply_async()
            wait_until(f"{steps} steps", lambda: stamps.exists()
                       and len(stamps.read_text().splitlines()) == steps,
                       time.monotonic() + steps * POLLING, [worker], interval=0.05)
    finally:
        stop_all([worker])
    times = [sent] + [float(line.split()[1]) for line in stamps.read_text().splitlines()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < PROMPT, gaps
