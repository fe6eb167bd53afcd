"""PostgreSQL through psycopg 3: an episode's statements in pipeline mode, several in one round trip
where none needs the result of another.

An episode is then two round trips: BEGIN, the instance's lock, the release of its wake-up
claim and the inbox read go together (`begin_and_run`); the episode's write and COMMIT go
together (`write_and_commit`). Each statement still runs by itself on the server, in order, with
a snapshot of its own: the inbox read sees what the lock waited for.

The episode's connection runs in psycopg's autocommit mode (`prepare`) and this module sends
BEGIN and COMMIT as statements of the pipelines: otherwise psycopg sends its own BEGIN, and waits
for it, before the first statement. Statements SQLAlchemy sends in between (a history load, a
child's creation) run in the open transaction all the same (psycopg adds no BEGIN in autocommit
mode), and the SQLAlchemy transaction's commit or rollback at the end reaches the server only if
the transaction is still open (psycopg looks at the server's transaction status).

Other databases and drivers (SQLite, MySQL/MariaDB, psycopg2) keep one statement a round trip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from celery_durable.store.engine import count_driver_statements

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # psycopg is an optional dependency (the "postgres" extra)
    psycopg = None  # type: ignore[assignment]


def available(conn: Connection) -> bool:
    """Whether ``conn`` is a PostgreSQL connection through psycopg 3 with pipeline mode."""
    return (psycopg is not None and conn.dialect.name == "postgresql"
            and isinstance(conn.connection.driver_connection, psycopg.Connection)
            and _pipeline_supported())


@cache
def _pipeline_supported() -> bool:
    return bool(psycopg is not None and psycopg.Pipeline.is_supported())


def prepare(conn: Connection) -> None:
    """Put ``conn`` (not yet in a transaction) in autocommit mode: BEGIN and COMMIT are then
    sent by `begin_and_run` and `write_and_commit` (see the module docstring)."""
    conn.execution_options(isolation_level="AUTOCOMMIT")


def begin_and_run(conn: Connection, statements: Sequence[ClauseElement],
                  params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """In one round trip: BEGIN, then ``statements`` (SQLAlchemy Core statements, each run with
    ``params``) in order; the rows each returned, as dicts (none for a statement that returns
    none). The transaction stays open, also when a statement failed (then roll it back)."""
    texts = [_sql(statement) for statement in statements]
    count_driver_statements(conn.engine, texts)  # (BEGIN and COMMIT are not counted)
    driver = _driver(conn)
    with _translated(conn, texts[0], params):
        with driver.pipeline():
            cursors = [driver.cursor(row_factory=dict_row) for _ in texts]
            # (a cursor keeps the result of its last statement: BEGIN's is not needed)
            cursors[0].execute("BEGIN")
            for cursor, text in zip(cursors, texts, strict=True):
                cursor.execute(text, params)
        return [cursor.fetchall() if _returned_rows(cursor) else [] for cursor in cursors]


def write_and_commit(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (psycopg's ``%(name)s`` parameters) and COMMIT in one round trip; return the
    rows it returned. Should either fail, the transaction is aborted: nothing was written."""
    driver = _driver(conn)
    count_driver_statements(conn.engine, [sql])
    with _translated(conn, sql, params):
        with driver.pipeline():
            cursor, committing = driver.cursor(), driver.cursor()
            cursor.execute(sql, params)
            committing.execute("COMMIT")
        return cursor.fetchall() if _returned_rows(cursor) else []


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection


def _returned_rows(cursor: Any) -> bool:
    # (cheaper than cursor.description, which describes every column)
    result = cursor.pgresult
    return result is not None and result.status == psycopg.pq.ExecStatus.TUPLES_OK


@contextmanager
def _translated(conn: Connection, statement: str, params: dict[str, Any]) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy's (`DBAPIError` and its subclasses), as if SQLAlchemy had
    run the statements; a lost connection is invalidated, so that the pool replaces it."""
    assert psycopg is not None
    try:
        yield
    except psycopg.Error as error:
        lost = conn.dialect.is_disconnect(cast(Any, error), _driver(conn), None)
        wrapped = DBAPIError.instance(statement, params, error, psycopg.Error,
                                      connection_invalidated=lost, dialect=conn.dialect)
        if lost:
            conn.invalidate(wrapped)
        raise wrapped from error


def _sql(statement: ClauseElement) -> str:
    """``statement`` (built once: a module's constant) as psycopg's SQL text, compiled once per
    process."""
    found = _COMPILED.get(id(statement))
    if found is None:
        found = _COMPILED[id(statement)] = (statement, str(statement.compile(dialect=_DIALECT)))
    return found[1]


_DIALECT = PGDialect_psycopg()
#: statement id -> (statement: kept, so that its id is not reused; its SQL text)
_COMPILED: dict[int, tuple[ClauseElement, str]] = {}
