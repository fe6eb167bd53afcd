"""SQLAlchemy engines for the store, configured per database for many concurrent writers.

SQLite: WAL, a 30 s busy timeout, foreign keys on, and SQLAlchemy's documented recipe that
takes transaction control away from pysqlite so that every write transaction starts with
``BEGIN IMMEDIATE`` (the write lock is taken up front: no "database is locked" on a lock upgrade).
Read-only transactions (connections marked with `READ_ONLY`) start with a plain ``BEGIN`` and so
never wait for writers. PostgreSQL and MySQL/MariaDB: a pooled connection idle for more than
`PING_AFTER` seconds is pinged before use (SQLAlchemy's ``pool_pre_ping`` would cost every
transaction of the hot path a round trip); MySQL/MariaDB also run at READ COMMITTED (no gap
locks, and a re-read inside an episode sees rows committed since).
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import Connection, make_url

#: Execution option marking a connection whose transaction only reads.
READ_ONLY = "durable_read_only"

SUPPORTED_DIALECTS = ("sqlite", "postgresql", "mysql")
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: seconds a pooled connection may sit idle before it is pinged on checkout
PING_AFTER = 1.0


#: query parameters of a store URL whose values are secrets (``?password=``, ``sslpassword``)
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|credential|auth", re.IGNORECASE)


def masked_url(url: Any) -> str:
    """``url`` with its secrets replaced by ``***``: the password (all of it, ``@`` included)
    and the values of query parameters such as ``?password=``, for messages."""
    text = str(url)
    if "://" not in text:
        return "(a string that is not a URL)"
    scheme, _, rest = text.partition("://")
    rest, mark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:  # the password runs to the last @ before the host
        userinfo, _, host = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:***@{host}" if colon else f"{user}@{host}"
    if query:
        query = "&".join(_masked_param(part) for part in query.split("&"))
    return f"{scheme}://{authority}{slash}{path}{mark}{query}"


def _masked_param(part: str) -> str:
    name, equals, _value = part.partition("=")
    return f"{name}=***" if equals and _SECRET_PARAM.search(name) else part


def dialect_of(url: str) -> str:
    """The store's name for the database behind ``url``: "sqlite", "postgresql" or "mysql"."""
    try:
        name = make_url(url).get_backend_name()
    except Exception as exc:  # ArgumentError, or ValueError for a bad port
        raise ValueError(f"cannot read the store URL {masked_url(url)!r} ({exc}); write it as "
                         "dialect+driver://user:password@host:port/database") from None
    name = "mysql" if name == "mariadb" else name
    if name not in SUPPORTED_DIALECTS:
        raise ValueError(f"unsupported store database {name!r} in {masked_url(url)!r}; use "
                         "SQLite, PostgreSQL or MySQL/MariaDB (e.g. postgresql+psycopg://host/db)")
    return name


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` set up for the store (see the module docstring)."""
    dialect = dialect_of(url)
    if dialect == "sqlite":
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if dialect == "mysql":
        engine = create_engine(url, pool_recycle=3600, isolation_level="READ COMMITTED")
    else:
        engine = create_engine(url)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def _note_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, connection_record: Any, proxy: Any) -> None:
    # A connection used moments ago is alive as far as a ping could tell; one that sat idle may
    # have been closed by a database restart. DisconnectionError makes the pool replace it.
    idle_since = connection_record.info.get("checked_in_at")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        # end the transaction the ping began, so that the connection can be switched to
        # autocommit (a delivery, one statement, runs so on PostgreSQL)
        dbapi_connection.rollback()
    except Exception as error:
        raise exc.DisconnectionError(f"stale pooled connection: {error}") from error


#: SQLSTATEs / MySQL error codes of a transaction the database aborted to break a deadlock (or a
#: serialization failure): running it again is the documented remedy.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
_RETRYABLE_MYSQL_CODES = {1213, 1205}  # deadlock found; lock wait timeout


def is_deadlock(error: BaseException) -> bool:
    """Whether ``error`` (an SQLAlchemy DBAPIError) aborted a transaction to break a deadlock,
    so that the whole transaction may simply run again."""
    orig = getattr(error, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in _RETRYABLE_MYSQL_CODES


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Stop pysqlite from emitting BEGIN (and COMMIT before DDL) itself; `_sqlite_begin` does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def count_driver_statements(engine: Engine, statements: Sequence[str]) -> None:
    """Tell the counter attached to ``engine``, if any, of statements sent to the driver
    directly (SQLAlchemy's cursor events do not see them)."""
    counter = _COUNTERS.get(engine)
    if counter is not None:
        counter.driver_statements(statements)


@dataclass
class StatementCount:
    """What `StatementCounter.counting` saw: the number of statements and their SQL text."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


class StatementCounter:
    """Counts statements sent through the engines it is attached to (a test hook), by the thread
    that counts: what a background thread sends meanwhile (the outbox acknowledgements' timed
    flush, a sweeper) is not the cost of the code being measured."""

    def __init__(self) -> None:
        self._active: list[tuple[int, StatementCount]] = []

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._seen)
        _COUNTERS[engine] = self

    def driver_statements(self, statements: Sequence[str]) -> None:
        """Count statements sent to the driver without SQLAlchemy (see store/pipelines.py)."""
        thread = threading.get_ident()
        for counter_thread, count in self._active:
            if counter_thread == thread:
                count.statements.extend(statements)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        thread = threading.get_ident()
        for counter_thread, count in self._active:
            if counter_thread == thread:
                count.statements.append(statement)

    @contextmanager
    def counting(self) -> Iterator[StatementCount]:
        entry = (threading.get_ident(), StatementCount())
        self._active.append(entry)
        try:
            yield entry[1]
        finally:
            self._active.remove(entry)


_COUNTERS: weakref.WeakKeyDictionary[Engine, StatementCounter] = weakref.WeakKeyDictionary()
