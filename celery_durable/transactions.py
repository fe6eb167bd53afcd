"""Scheduling inside the caller's transaction: ``schedule_new_orchestration(..., session=...)``.

The instance's rows are written through the caller's SQLAlchemy ``Session`` or ``Connection``,
inside their transaction, and its wake-up is sent only after that transaction commits: the
instance exists if and only if the transaction commits, and nothing is sent before. A process
that dies between the commit and the send leaves an instance whose start waits in its inbox: the
sweeper wakes it (after ``durable_recovery_grace``).

Inside Django's ``transaction.atomic()`` the same happens without ``session=`` (see
`celery_durable.contrib.django`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url

from celery_durable.errors import TransactionMismatchError
from celery_durable.store.engine import masked_url

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from celery_durable.store import Store

logger = logging.getLogger(__name__)
Callback = Callable[[], None]
#: the key, in ``Session.info`` / ``Connection.info``, of the callbacks waiting for a commit
_PENDING = "celery_durable.after_commit"
#: host names of this machine's own database server
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class CallerTransaction:
    """A transaction of the caller's that a new instance joins.

    ``connection``: where the instance's rows are written (None: the store is another database,
    so the instance is created, and started, only once the caller's transaction has committed);
    ``on_commit(callback)`` runs ``callback`` after that commit (never if it rolls back).
    """

    connection: Connection | None
    on_commit: Callable[[Callback], None]


def caller_transaction(store: Store, session: Any = None) -> CallerTransaction | None:
    """The transaction a new instance joins: ``session`` (a SQLAlchemy ``Session`` or
    ``Connection``), else an open ``transaction.atomic()`` block of Django's, else None."""
    if session is not None:
        return _sqlalchemy_transaction(store, session)
    if "django.db" in sys.modules:  # cheap: nothing to look for where Django was never imported
        from celery_durable.contrib.django import atomic_transaction

        return atomic_transaction(store)
    return None


def same_database(a: str | URL, b: str | URL) -> bool:
    """Whether two SQLAlchemy URLs name the same database (drivers and users may differ)."""
    ua, ub = make_url(a), make_url(b)
    name_a, name_b = (_backend(u) for u in (ua, ub))
    if name_a != name_b:
        return False
    if name_a == "sqlite":
        path = _sqlite_path(ua)
        return path is not None and path == _sqlite_path(ub)
    default_port = {"postgresql": 5432, "mysql": 3306}.get(name_a)
    hosts = ["localhost" if u.host in _LOCAL else u.host for u in (ua, ub)]
    return ((hosts[0], ua.port or default_port, ua.database)
            == (hosts[1], ub.port or default_port, ub.database))


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def _sqlite_path(url: URL) -> str | None:
    database = url.database
    if not database or database == ":memory:":
        return None  # every in-memory database is another one
    return os.path.realpath(database)


def _sqlalchemy_transaction(store: Store, session: Any) -> CallerTransaction:
    from sqlalchemy.orm import Session

    if isinstance(session, Session):
        conn = session.connection()
        on_commit = _session_on_commit(session)
    elif isinstance(session, Connection):
        conn = session
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            raise TransactionMismatchError(
                "session= got a Connection in AUTOCOMMIT mode: the instance's rows would commit "
                "one by one, outside any transaction of yours; pass a Connection in a "
                "transaction (engine.begin() / engine.connect()) or leave session= out")
        on_commit = _connection_on_commit(conn)
    else:
        raise TypeError("session= takes a SQLAlchemy Session or Connection on the store's "
                        f"database, got {session!r}")
    if not same_database(conn.engine.url, store.url):
        raise TransactionMismatchError(
            f"session= is bound to {masked_url(conn.engine.url)!r} but the store is "
            f"{masked_url(store.url)!r}: the instance can only join a transaction on the "
            "store's own database; pass a session of that database, or leave session= out "
            "(the instance then starts at once, whatever becomes of your transaction)")
    return CallerTransaction(conn, on_commit)


def run_callbacks(callbacks: list[Callback]) -> None:
    """Run callbacks after a commit; one that fails is logged (the sweeper starts what it did
    not), never raised into the code that committed."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.exception("could not start an orchestration after its transaction committed; "
                             "the sweeper will start it after durable_recovery_grace")


def _session_on_commit(session: Session) -> Callable[[Callback], None]:
    """Callbacks run after the session's outermost transaction commits (SQLAlchemy's
    ``after_commit``, which also fires for savepoints: those are skipped) and are dropped when it
    ends otherwise."""
    if _PENDING not in session.info:
        session.info[_PENDING] = []
        event.listen(session, "after_commit", _session_committed)
        event.listen(session, "after_transaction_end", _session_transaction_ended)
    pending: list[Callback] = session.info[_PENDING]
    return pending.append


def _session_committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:  # a savepoint, not the transaction
        return
    callbacks = list(session.info[_PENDING])
    session.info[_PENDING].clear()
    run_callbacks(callbacks)


def _session_transaction_ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # rolled back, or committed (its callbacks ran)
        session.info[_PENDING].clear()


def _connection_on_commit(conn: Connection) -> Callable[[Callback], None]:
    """Callbacks run once the connection's transaction has committed and dropped if it rolls
    back.

    SQLAlchemy's Core ``commit`` event fires just before the database commits, and no event
    fires right after; so a commit only marks the callbacks, and they run on the next event
    that follows the commit: the connection's next ``begin``, or its return to the pool (the end
    of ``with engine.begin()`` or ``conn.close()``). A commit that the database refused leaves at
    most a wake-up for an instance that does not exist, which its worker drops.
    """
    info = conn.info  # kept with the DBAPI connection across checkouts
    if _PENDING not in info:
        info[_PENDING] = _ConnectionCallbacks()
    callbacks: _ConnectionCallbacks = info[_PENDING]
    if not event.contains(conn, "commit", callbacks.committing):
        event.listen(conn, "commit", callbacks.committing)
        event.listen(conn, "rollback", callbacks.rolled_back)
        event.listen(conn, "begin", callbacks.run_committed)
    pool = conn.engine.pool
    if not event.contains(pool, "checkin", _checked_in):
        event.listen(pool, "checkin", _checked_in)
    return callbacks.waiting.append


class _ConnectionCallbacks:
    """The callbacks of one DBAPI connection: waiting for its commit, or committed."""

    def __init__(self) -> None:
        self.waiting: list[Callback] = []
        self.committed: list[Callback] = []

    def committing(self, conn: Any) -> None:
        self.committed.extend(self.waiting)
        self.waiting.clear()

    def rolled_back(self, conn: Any) -> None:
        self.waiting.clear()

    def run_committed(self, conn: Any = None) -> None:
        callbacks, self.committed = self.committed, []
        run_callbacks(callbacks)


def _checked_in(dbapi_connection: Any, connection_record: Any) -> None:
    if connection_record is None:
        return
    callbacks = connection_record.info.get(_PENDING)
    if callbacks is not None:
        callbacks.waiting.clear()  # returned without a commit: the pool rolled it back
        callbacks.run_committed()
