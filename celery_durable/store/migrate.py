"""Creating and upgrading the store's schema with the Alembic migrations shipped in the package.

Safe when several processes start at once: the upgrade runs under a lock (a PostgreSQL advisory
lock, a MySQL named lock, SQLite's write lock), and an "already exists" error from a race is
answered by re-reading the schema revision.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from celery_durable.store.engine import READ_ONLY
from celery_durable.store.schema import SCHEMA_REVISION, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: PostgreSQL advisory lock key / MySQL lock name held while the schema is upgraded.
PG_LOCK_KEY = 0x64757261626C65  # "durable"
MYSQL_LOCK_NAME = "celery_durable_schema"
LOCK_TIMEOUT_S = 120
ATTEMPTS = 3


def alembic_config() -> Config:
    """An Alembic ``Config`` for the shipped migrations, built in code (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def schema_revision(engine: Engine) -> str | None:
    """The store schema's Alembic revision, or None if the schema was not created."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                value = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except DBAPIError:  # no version table yet
        return None
    return None if value is None else str(value)


def upgrade_schema(engine: Engine, dialect: str) -> None:
    """Bring the schema to `SCHEMA_REVISION` (create it on an empty database); idempotent."""
    if schema_revision(engine) == SCHEMA_REVISION:
        return
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _upgrade_locked(engine, dialect)
            return
        except DBAPIError as exc:  # e.g. "already exists" from a concurrent creator
            if schema_revision(engine) == SCHEMA_REVISION:
                return
            if attempt == ATTEMPTS:
                raise
            log.info("schema upgrade raced with another process (%s); retrying", exc.orig)


def _upgrade_locked(engine: Engine, dialect: str) -> None:
    if dialect == "postgresql":
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(PG_LOCK_KEY)))
            _run_upgrade(conn)
    elif dialect == "mysql":
        with engine.connect() as conn:
            got = conn.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                               {"name": MYSQL_LOCK_NAME, "timeout": LOCK_TIMEOUT_S}).scalar()
            conn.commit()
            if got != 1:
                raise TimeoutError(f"could not take the MySQL lock {MYSQL_LOCK_NAME!r} to "
                                   f"upgrade the schema within {LOCK_TIMEOUT_S} s")
            try:
                with conn.begin():
                    _run_upgrade(conn)
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": MYSQL_LOCK_NAME})
                conn.commit()
    else:  # SQLite: the transaction starts with BEGIN IMMEDIATE, which serialises upgraders
        with engine.begin() as conn:
            _run_upgrade(conn)


def _run_upgrade(conn: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
    log.debug("store schema upgraded to %s", SCHEMA_REVISION)
