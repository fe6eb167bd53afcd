"""A safer kombu ``filesystem://`` transport (kombu issue #1551).

kombu's filesystem transport creates a message file under its final name and
then writes the body, and its consumer neither takes the writer's lock nor
tolerates a bad file: a worker can read an empty or partial file, crash with
``JSONDecodeError`` and lose the message.

This subclass publishes write-then-rename, so consumers only see complete
files, and its consumer skips a file it cannot parse (a plain kombu producer
may still be writing it) and retries it on later polls. A file unreadable for
``unreadable_grace_period`` seconds (by mtime) is renamed to ``<name>.bad`` so
that it cannot block the queue forever.

A consumer waiting for messages is told of new files instead of polling for
them: on Linux an inotify watch on ``data_folder_in``
(:mod:`celery_durable.runtime.folder_watch`) wakes it when a message file is
renamed or written into the folder, whichever process wrote it; it still
rescans every ``polling_interval`` seconds (default 1) as a safety net, e.g.
for writers on another host of a network filesystem. Without inotify (another
OS, ``"inotify": False``, or the watch could not be made: logged at DEBUG) it
polls every ``polling_interval`` seconds (default 0.1), and a message
published by the same process still wakes it at once. Acknowledging or
rejecting a message wakes a consumer held back by its prefetch limit.

Transport options: kombu's ``data_folder_in``, ``data_folder_out``,
``store_processed``, ``processed_folder``, ``control_folder`` and
``polling_interval``, plus ``inotify`` (default True; False to poll),
``unreadable_grace_period`` (seconds, default 30) and ``fsync`` (fsync each
message file and its folder before it becomes visible, default False).

Without folder options, messages are written to and read from ``./celery_broker``
(control files in ``./celery_broker/control``), created on first use, so a bare
``filesystem://`` URL works on one machine.

Call :func:`install` to make ``filesystem://`` resolve to this transport.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import time
import uuid
from functools import cached_property
from pathlib import Path
from queue import Empty
from typing import Any, ClassVar

from kombu import transport as kombu_transports
from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from celery_durable.runtime import folder_watch

__all__ = ["Channel", "QoS", "Transport", "install", "DEFAULT_UNREADABLE_GRACE_PERIOD"]

logger = logging.getLogger(__name__)

#: Seconds an unreadable message file may stay in the queue before it is set aside.
DEFAULT_UNREADABLE_GRACE_PERIOD = 30.0
#: Seconds between rescans of the folder when the kernel reports new files (inotify).
NOTIFIED_RESCAN_INTERVAL = 1.0
#: Seconds between polls of the folder without inotify.
DEFAULT_POLLING_INTERVAL = 0.1

_ALIAS = "filesystem"
_TARGET = "celery_durable.runtime.filesystem:Transport"
_BAD_SUFFIX = ".bad"
_sequence = itertools.count()  # keeps one process's messages FIFO within a millisecond


class QoS(virtual.QoS):
    """kombu's QoS that wakes its consumer when an ack or a reject makes room under the
    prefetch limit (acks come from other threads, e.g. a prefork pool's result handler)."""

    def ack(self, delivery_tag: Any) -> None:
        super().ack(delivery_tag)
        self._made_room()

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().reject(delivery_tag, requeue=requeue)
        self._made_room()

    def _made_room(self) -> None:
        transport = self.channel.connection
        if self.prefetch_count and transport is not None:
            transport.wake()


class Channel(kombu_filesystem.Channel):
    """Filesystem channel that publishes atomically and survives unreadable files."""

    QoS = QoS

    # kombu's defaults ('data_in' to write, 'data_out' to read) deliver nothing on a bare
    # ``filesystem://`` URL; without options, one folder serves both ways and is created.
    @cached_property
    def data_folder_in(self) -> str:
        return self._folder("data_folder_in")

    @cached_property
    def data_folder_out(self) -> str:
        return self._folder("data_folder_out")

    @cached_property
    def control_folder(self) -> Path:
        return Path(self._folder("control_folder", os.path.join(DEFAULT_FOLDER, "control")))

    def _folder(self, option: str, default: str = "") -> str:
        return _folder(self.transport_options, option, default)

    @cached_property
    def _written_folder(self) -> str:
        return os.path.abspath(self.data_folder_out)

    @cached_property
    def unreadable_grace_period(self) -> float:
        return float(
            self.transport_options.get("unreadable_grace_period", DEFAULT_UNREADABLE_GRACE_PERIOD)
        )

    @cached_property
    def fsync(self) -> bool:
        return bool(self.transport_options.get("fsync", False))

    @cached_property
    def _reported_unreadable(self) -> set[str]:
        return set()

    # kombu.transport.filesystem renames AbstractChannel._put(queue, message) to payload.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message to a hidden temporary file, then rename it into the queue."""
        folder = self.data_folder_out
        stamp = f"{round(time.monotonic() * 1000)}_{next(_sequence):012d}-{uuid.uuid4()}"
        name = f"{stamp}.{queue}.msg"  # kombu's ``<ms>_<uuid>.<queue>.msg``, sortable
        final = os.path.join(folder, name)
        tmp = os.path.join(folder, f".{name}.tmp")  # consumers match only ``*.<queue>.msg``
        try:
            try:
                with open(tmp, "xb") as f:
                    f.write(dumps(payload).encode("utf-8"))
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            if self.fsync:
                _fsync_folder(folder)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc
        folder_watch.notify_written(self._written_folder)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        """Return the oldest readable message of ``queue``; skip files that are not."""
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            path = os.path.join(folder, name)
            payload = self._read(path, name)
            if payload is not None and self._claim(path, name):
                self._reported_unreadable.discard(name)
                return payload
        raise Empty()

    def _read(self, path: str, name: str) -> dict[str, Any] | None:
        """Parse one message file in place; ``None`` if it is gone or unreadable."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None  # taken by another consumer
        except OSError as exc:
            self._unreadable(path, name, repr(exc))
            return None
        try:
            payload = loads(raw)
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            self._unreadable(path, name, f"{len(raw)} bytes, {exc}")
            return None
        if not isinstance(payload, dict):
            self._unreadable(path, name, f"expected a JSON object, got {type(payload).__name__}")
            return None
        return payload

    def _claim(self, path: str, name: str) -> bool:
        """Take the file out of the queue; exactly one consumer wins the race."""
        try:
            if self.store_processed:
                shutil.move(path, os.path.join(self.processed_folder, name))
            else:
                os.remove(path)
        except OSError:
            return False
        return True

    def _unreadable(self, path: str, name: str, reason: str) -> None:
        """Leave a bad file for a later poll, or set it aside once its grace period is over."""
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError:
            return
        if age < self.unreadable_grace_period:
            if name not in self._reported_unreadable:
                self._reported_unreadable.add(name)
                logger.warning("Skipping unreadable message file %s (%s); will retry", path, reason)
            return
        self._reported_unreadable.discard(name)
        try:
            os.replace(path, path + _BAD_SUFFIX)
        except OSError:
            return  # taken or set aside by another consumer
        logger.warning(
            "Moved unreadable message file %s aside after %.1f s (%s)", path, age, reason
        )


class Transport(kombu_filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel` and broker state per control folder.

    kombu shares one in-memory ``BrokerState`` among all filesystem connections of a process
    and does not write a binding to ``control_folder`` when that state already holds it, so a
    later connection with another control folder (a test's temporary one, say) drops its
    messages as unroutable. Here each control folder gets its own state.
    """

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # no host: kombu would otherwise warn "No hostname was supplied" for every connection
        return {"port": self.default_port}

    Channel = Channel
    _states: ClassVar[dict[str, virtual.BrokerState]] = {}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        folder = os.path.abspath(options.get("control_folder")
                                 or os.path.join(DEFAULT_FOLDER, "control"))
        self.state = self._states.setdefault(folder, virtual.BrokerState())
        self.inotify = bool(options.get("inotify", True))
        self._options = options
        self._interval_option: float | None = options.get("polling_interval")
        self._watch: folder_watch.FolderWatch | None = None

    def drain_events(  # type: ignore[override]  # kombu's base takes **kwargs; virtual's timeout
        self, connection: Any, timeout: float | None = None
    ) -> None:
        """Deliver one message; between empty scans wait on the folder's watch (not a sleep)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        assert self.cycle is not None  # set by kombu's __init__
        get = self.cycle.get
        watch = self._current_watch()  # before the first scan: nothing written after it is missed
        while True:
            try:
                get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            wait = self._wait_interval(watch)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()  # socket.timeout, as kombu raises
                wait = min(wait, remaining)
            watch.wait(wait)

    def wake(self) -> None:
        """Make this process's wait in `drain_events` return at once (any thread)."""
        watch = self._watch
        if watch is not None and watch.pid == os.getpid():
            watch.wake()

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        watch, self._watch = self._watch, None
        if watch is not None and watch.pid == os.getpid():
            watch.close()

    def _current_watch(self) -> folder_watch.FolderWatch:
        """This process's watch on ``data_folder_in``, made on first use and after a fork."""
        watch = self._watch
        if watch is None or watch.pid != os.getpid():
            folder = _folder(self._options, "data_folder_in")
            watch = self._watch = folder_watch.watch(folder, inotify=self.inotify,
                                                     suffix=".msg")
        return watch

    def _wait_interval(self, watch: folder_watch.FolderWatch) -> float:
        if self._interval_option is not None:
            return float(self._interval_option)
        return NOTIFIED_RESCAN_INTERVAL if watch.notified else DEFAULT_POLLING_INTERVAL


DEFAULT_FOLDER = "celery_broker"


def install() -> None:
    """Make ``filesystem://`` resolve to :class:`Transport` for kombu Connections created later.

    Idempotent. Connections that already exist keep the transport they resolved.
    """
    kombu_transports.TRANSPORT_ALIASES[_ALIAS] = _TARGET
    kombu_transports._transport_cache.pop(_ALIAS, None)  # get_transport_cls memoizes


def _folder(options: dict[str, Any], option: str, default: str = "") -> str:
    """The folder a transport option names (default: ``default``, else `DEFAULT_FOLDER`),
    created if missing."""
    folder = str(options.get(option) or default or DEFAULT_FOLDER)
    os.makedirs(folder, exist_ok=True)
    return folder


def _fsync_folder(folder: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows cannot open a folder for fsync
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
