"""Wait for new files in a folder: told by the kernel (Linux inotify) where it can, polled elsewhere.

:func:`watch` returns a :class:`FolderWatch` for one folder and one process. Its ``wait(timeout)``
returns as soon as a file whose name ends with the watched suffix is created, closed after
writing or renamed into the folder (an :class:`InotifyWatch`, Linux only, through ``ctypes``),
or as soon as some thread of this process calls ``wake()`` (a self-pipe); otherwise when the
timeout is over. Where inotify is unavailable (another OS, no ``libc`` symbol, a limit reached,
the folder missing) it logs why at DEBUG and returns a :class:`PollingWatch`: ``wait`` then
returns on ``wake()`` or at the timeout, and the caller polls.

:func:`notify_written` wakes the polling watches of this process on a folder, so that a message
written by this process is seen at once even without inotify.

A watch belongs to the process that made it: children of a ``fork()`` close their inherited copies
(so that parent and children never share an inotify descriptor) and see ``watch.pid`` differ from
``os.getpid()``; its owner then makes a new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import struct
import sys
import threading
import time
import weakref
from typing import Any, Protocol

__all__ = ["FolderWatch", "InotifyWatch", "PollingWatch", "notify_written", "watch"]

logger = logging.getLogger(__name__)

# <sys/inotify.h>
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
WATCH_MASK = IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then ``len`` bytes of name
_READ_SIZE = 64 * 1024


class FolderWatch(Protocol):
    """What a consumer waits on: new files in its folder, or a wake-up from this process."""

    folder: str
    pid: int
    #: True when the kernel reports new files (inotify); False when the caller has to poll
    notified: bool

    def wait(self, timeout: float) -> bool:
        """Block until there may be something new (True) or ``timeout`` seconds pass (False)."""

    def wake(self) -> None:
        """Make a ``wait`` in progress, or the next one, return at once; any thread may call it."""

    def close(self) -> None:
        """Release what the watch holds; idempotent."""


class PollingWatch:
    """A watch the kernel does not feed: ``wait`` returns on `wake` or at its timeout."""

    notified = False

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.pid = os.getpid()
        self._woken = threading.Event()
        _register(self)

    def wait(self, timeout: float) -> bool:
        woken = self._woken.wait(max(timeout, 0.0))
        self._woken.clear()  # the scan that follows sees what an earlier wake announced
        return woken

    def wake(self) -> None:
        self._woken.set()

    def close(self) -> None:
        _unregister(self)

    def __repr__(self) -> str:
        return f"<PollingWatch {self.folder!r}>"


class InotifyWatch:
    """An inotify descriptor on ``folder`` for files ending with ``suffix``, and a self-pipe."""

    notified = True

    def __init__(self, folder: str, suffix: str = "") -> None:
        self.folder = folder
        self.suffix = suffix.encode()
        self.pid = os.getpid()
        self._lock = threading.Lock()  # wake() from other threads against close()
        self._closed = False
        self._inotify = _inotify_open(folder)
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            os.close(self._inotify)
            raise
        # a watch dropped without close() (its connection never closed) still frees its fds
        self._release = weakref.finalize(self, _close_fds, self.fds)
        self._release.atexit = False
        self._poll = select.poll()
        self._poll.register(self._inotify, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        _register(self)

    @property
    def fds(self) -> tuple[int, int, int]:
        """The descriptors it holds: inotify, the pipe's read end, its write end."""
        return self._inotify, self._wake_r, self._wake_w

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            woken = False
            for fd, _ in self._poll.poll(remaining * 1000):
                if fd == self._wake_r:
                    _drain(fd)
                    woken = True
                elif fd == self._inotify and self._read_events():
                    woken = True
            if woken:
                return True

    def _read_events(self) -> bool:
        """Consume the pending events; True if one may mean a new message."""
        relevant = False
        while True:
            try:
                data = os.read(self._inotify, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return relevant
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:  # events were dropped: look at the folder
                    relevant = True
                elif mask & IN_IGNORED:
                    logger.debug("inotify watch on %s ended (folder removed?); polling",
                                 self.folder)
                elif name.endswith(self.suffix):
                    relevant = True

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # a full pipe is woken already
                os.write(self._wake_w, b"\0")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _unregister(self)
            self._release()

    def __repr__(self) -> str:
        return f"<InotifyWatch {self.folder!r}{' closed' if self._closed else ''}>"


def watch(folder: str, *, inotify: bool = True, suffix: str = "") -> FolderWatch:
    """A watch on ``folder``: inotify for names ending with ``suffix`` when ``inotify`` is true and
    the platform has it, else a `PollingWatch` (the reason logged at DEBUG)."""
    folder = os.path.abspath(folder)
    if not inotify:
        logger.debug("inotify turned off for %s: polling", folder)
        return PollingWatch(folder)
    if not sys.platform.startswith("linux"):
        logger.debug("no inotify on %s: polling %s", sys.platform, folder)
        return PollingWatch(folder)
    try:
        return InotifyWatch(folder, suffix)
    except OSError as exc:
        logger.debug("inotify unavailable for %s (%s): polling", folder, exc)
        return PollingWatch(folder)


def notify_written(folder: str) -> None:
    """Wake this process's polling watches on ``folder`` (an absolute path): a file was written.
    Inotify watches need no telling."""
    with _watches_lock:
        found = list(_watches.get(folder, ()))
    for each in found:
        if not each.notified:
            each.wake()


# -- inotify through ctypes ------------------------------------------------------------------------

def _inotify_open(folder: str) -> int:
    """An inotify descriptor (non-blocking, close-on-exec) watching ``folder``; OSError if not."""
    init1, add_watch = _libc_inotify()
    fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise _errno_error("inotify_init1")
    if add_watch(fd, os.fsencode(folder), WATCH_MASK) < 0:
        error = _errno_error(f"inotify_add_watch({folder!r})")
        os.close(fd)
        raise error
    return fd


_libc_functions: tuple[Any, Any] | None = None


def _libc_inotify() -> tuple[Any, Any]:
    global _libc_functions
    if _libc_functions is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter links
            init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError) as exc:
            raise OSError(f"libc has no inotify: {exc}") from exc
        init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add_watch.restype = ctypes.c_int
        _libc_functions = init1, add_watch
    return _libc_functions


def _errno_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 4096):
            pass


# -- this process's watches, per folder; forgotten by fork children ------------------------------

_watches: dict[str, weakref.WeakSet[Any]] = {}
_watches_lock = threading.Lock()


def _register(each: FolderWatch) -> None:
    with _watches_lock:
        _watches.setdefault(each.folder, weakref.WeakSet()).add(each)


def _unregister(each: FolderWatch) -> None:
    with _watches_lock:
        found = _watches.get(each.folder)
        if found is not None:
            found.discard(each)
            if not found:
                del _watches[each.folder]


def _after_fork_in_child() -> None:
    """Close the parent's inotify descriptors in a fork child; its owners make new watches."""
    global _watches_lock
    _watches_lock = threading.Lock()  # another thread may have held it at the fork
    inherited = [each for found in _watches.values() for each in found]
    _watches.clear()
    for each in inherited:
        if isinstance(each, InotifyWatch):
            each._lock = threading.Lock()
            each.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
