"""Deferred deletion of published outbox rows.

Deleting an episode's outbox rows right after publishing them would cost every step a second
transaction (a commit, i.e. a WAL flush on PostgreSQL). Instead the publisher hands the ids to
`OutboxAcks`; the next episode this process commits deletes them inside its own transaction, and
a process that goes quiet deletes them in one transaction of their own after ``delay`` seconds.

Until then a row stays in the outbox. That is safe: the sweeper only re-publishes rows older than
its recovery grace (seconds, far longer than ``delay``), and a re-published message is a
duplicate delivery that the inbox's dedup keys absorb anyway.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

#: seconds a process keeps acknowledged ids before deleting them in a transaction of their own
FLUSH_DELAY = 0.5


class OutboxAcks:
    """Ids of published outbox rows waiting to be deleted, per process.

    ``delete`` is called with the ids to delete in a transaction of its own (by a timer thread
    after ``delay`` seconds, or by `flush`).
    """

    def __init__(self, delete: Callable[[list[int]], None], delay: float = FLUSH_DELAY) -> None:
        self._delete = delete
        self._delay = delay
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._ids: list[int] = []
        self._timer: threading.Timer | None = None

    def _own(self) -> None:
        # after a fork the parent's ids are the parent's to delete, and its timer does not exist
        if self._pid != os.getpid():
            self._pid, self._ids, self._timer = os.getpid(), [], None

    def add(self, ids: Sequence[int]) -> None:
        """Acknowledge published rows; they are deleted with the next commit or soon after."""
        if not ids:
            return
        with self._lock:
            self._own()
            self._ids.extend(ids)
            if self._timer is None:
                self._timer = threading.Timer(self._delay, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def take(self) -> list[int]:
        """The pending ids, now owned by the caller (give them back with `restore` if the
        transaction that was to delete them does not commit)."""
        with self._lock:
            self._own()
            ids, self._ids = self._ids, []
            return ids

    def restore(self, ids: Sequence[int]) -> None:
        """Give back ids a transaction took but did not delete."""
        if ids:
            self.add(ids)

    def pending(self) -> int:
        """How many acknowledged rows this process has not deleted yet."""
        with self._lock:
            self._own()
            return len(self._ids)

    def flush(self) -> None:
        """Delete the pending rows now, in a transaction of their own."""
        with self._lock:
            self._own()
            self._timer = None
            ids, self._ids = self._ids, []
        if not ids:
            return
        try:
            self._delete(ids)
        except Exception:  # kept in the outbox: the sweeper re-publishes them, harmlessly
            logger.warning("could not delete %d published outbox row(s); the sweeper will "
                           "re-publish them (duplicates are absorbed)", len(ids), exc_info=True)
