"""Schema creation (Alembic), engines per process, and the SQLite transaction setup."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from store_helpers import create

from celery_durable.store import Store, make_engine
from celery_durable.store.migrate import alembic_config, schema_revision
from celery_durable.store.schema import SCHEMA_REVISION, VERSION_TABLE, metadata

FORK = multiprocessing.get_context("fork")
TABLES = {"durable_instances", "durable_history", "durable_inbox", "durable_timers",
          "durable_outbox", VERSION_TABLE}


def test_schema_revision_is_the_alembic_head() -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head == SCHEMA_REVISION


def test_create_schema_is_idempotent(new_database: Callable[[], str]) -> None:
    url = new_database()
    store = Store(url)
    assert schema_revision(store.engine) is None
    store.create_schema()
    store.create_schema()
    other = Store(url)
    other.create_schema()
    other.dispose()
    assert schema_revision(store.engine) == SCHEMA_REVISION
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    store.dispose()


def test_schema_is_created_on_first_use(new_database: Callable[[], str]) -> None:
    store = Store(new_database())
    assert store.get_instance("nobody") is None
    assert schema_revision(store.engine) == SCHEMA_REVISION
    store.dispose()


def _create_schema(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(10)
    Store(url).create_schema()


def test_create_schema_concurrently(new_database: Callable[[], str]) -> None:
    url = new_database()
    barrier = FORK.Barrier(3)
    procs = [FORK.Process(target=_create_schema, args=(url, barrier)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    store = Store(url)
    assert schema_revision(store.engine) == SCHEMA_REVISION
    store.dispose()


def test_migration_matches_metadata(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, metadata) == []


def _use_after_fork(store: Store, instance_id: str, parent_engine: int) -> None:
    record = store.get_instance(instance_id)
    assert record is not None and record.name == "orch"
    assert id(store.engine) != parent_engine
    create(store, instance_id + "-child")
    store.dispose()


def test_engine_is_per_process(store: Store) -> None:
    create(store, "forked")
    parent_engine = store.engine
    proc = FORK.Process(target=_use_after_fork, args=(store, "forked", id(parent_engine)))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    assert store.engine is parent_engine  # the parent's pool survived the child
    assert store.get_instance("forked-child") is not None


def test_sqlite_takes_the_write_lock_up_front(tmp_path: os.PathLike[str]) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.sqlite3")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.rollback()
    store = Store(f"sqlite:///{tmp_path}/y.sqlite3")
    store.create_schema()
    with store.statement_count() as count:
        create(store, "x")
        store.get_instance("x")
    seen = count.statements
    assert seen[0] == "BEGIN IMMEDIATE"
    assert "BEGIN" in seen[1:] and seen.count("BEGIN IMMEDIATE") == 1  # reads do not lock
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM durable_inbox")).scalar() == 1
    store.dispose()
    engine.dispose()


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported store database"):
        Store("oracle://scott:tiger@localhost/x")
