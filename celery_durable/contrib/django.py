"""Django glue: the store on a database of ``DATABASES``, and starts inside ``atomic()``.

`store_url` turns a ``DATABASES`` entry into the store's SQLAlchemy URL. `atomic_transaction`
(called by ``schedule_new_orchestration``) joins an open ``transaction.atomic()`` block:

- when the store is that alias's database, the instance's rows are written through Django's own
  connection, inside the block's transaction, and its wake-up is sent by
  ``transaction.on_commit``: the instance exists if and only if the block commits, and a process
  that dies between the commit and the send leaves it to the sweeper;
- when the store is another database, the whole start waits for ``transaction.on_commit`` of
  the default alias (nothing exists before the commit; a process that dies right after the
  commit loses the start).

Nothing here imports Django until it is called; the package imports without Django installed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL

from celery_durable.errors import DjangoDatabaseError
from celery_durable.transactions import CallerTransaction, run_callbacks, same_database

if TYPE_CHECKING:
    from celery_durable.store import Store

__all__ = ["DjangoDatabaseError", "atomic_transaction", "store_url"]

#: Django database engines (their last dotted part) and the store's SQLAlchemy driver for each
DRIVERS = {"postgresql": "postgresql+psycopg", "postgis": "postgresql+psycopg",
           "mysql": "mysql+pymysql", "sqlite3": "sqlite", "spatialite": "sqlite"}
#: ``OPTIONS`` of a PostgreSQL database that libpq reads too (carried into the URL's query)
PG_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options",
              "connect_timeout", "application_name", "target_session_attrs", "passfile",
              "service")
#: SQLAlchemy drivers for the DBAPI module of a Django connection (its top-level package)
_DBAPI_DRIVERS = {"psycopg": "postgresql+psycopg", "psycopg2": "postgresql+psycopg2",
                  "MySQLdb": "mysql+mysqldb", "pymysql": "mysql+pymysql",
                  "sqlite3": "sqlite+pysqlite"}


def store_url(database: str | Mapping[str, Any] = "default") -> str:
    """The store URL of a Django database: an alias of ``settings.DATABASES`` (after Django's
    settings are loaded), or a ``DATABASES`` entry itself (usable in settings.py).

    PostgreSQL gives ``postgresql+psycopg://``, MySQL/MariaDB ``mysql+pymysql://``, SQLite
    ``sqlite:///<absolute path>``; any other engine raises `DjangoDatabaseError`.
    """
    if isinstance(database, str):
        from django.conf import settings

        alias = database
        if alias not in settings.DATABASES:
            raise DjangoDatabaseError(
                f"settings.DATABASES has no alias {alias!r} (it has {sorted(settings.DATABASES)}); "
                "pass one of those, or the DATABASES entry itself")
        entry: Mapping[str, Any] = settings.DATABASES[alias]
    else:
        alias, entry = "(given)", database
    engine = str(entry.get("ENGINE", ""))
    driver = DRIVERS.get(engine.rsplit(".", 1)[-1])
    if driver is None:
        raise DjangoDatabaseError(
            f"DATABASES[{alias!r}] uses ENGINE {engine!r}, which the store cannot use: it runs "
            "on PostgreSQL, MySQL/MariaDB or SQLite (django.db.backends.postgresql, .mysql, "
            ".sqlite3); set durable_store_url (CELERY_DURABLE_STORE_URL) to a SQLAlchemy URL "
            "instead")
    name = str(entry.get("NAME") or "")
    if driver == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise DjangoDatabaseError(
                f"DATABASES[{alias!r}] is the SQLite database {name!r}, which other processes "
                "cannot open: give it a file path (workers and clients must share the store)")
        return f"sqlite:///{os.path.abspath(name)}"
    options = entry.get("OPTIONS") or {}
    query: dict[str, str] = {}
    if driver.startswith("postgresql"):
        query = {k: str(options[k]) for k in PG_OPTIONS if k in options}
    elif "charset" in options:
        query = {"charset": str(options["charset"])}
    url = URL.create(driver, username=entry.get("USER") or None,
                     password=entry.get("PASSWORD") or None, host=entry.get("HOST") or None,
                     port=int(entry["PORT"]) if entry.get("PORT") else None,
                     database=name or None, query=query)
    return url.render_as_string(hide_password=False)


def atomic_transaction(store: Store) -> CallerTransaction | None:
    """The ``transaction.atomic()`` block a new instance joins, if one is open in this thread:
    on the store's own database (its rows go into the block's transaction), else on the default
    alias (the start waits for its commit). None outside atomic blocks, or where Django's
    settings are not configured."""
    from django.conf import settings

    if not settings.configured:
        return None
    from django.db import DEFAULT_DB_ALIAS, connections, transaction

    alias = _store_alias(store)
    if alias is not None and connections[alias].in_atomic_block:
        conn = connections[alias]
        return CallerTransaction(
            _sqlalchemy_connection(conn),
            lambda callback: transaction.on_commit(lambda: run_callbacks([callback]),
                                                   using=alias))
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return CallerTransaction(
            None, lambda callback: transaction.on_commit(lambda: run_callbacks([callback]),
                                                         using=DEFAULT_DB_ALIAS))
    return None


def _store_alias(store: Store) -> str | None:
    """The alias of ``DATABASES`` whose database is the store's, if any."""
    from django.conf import settings

    for alias, entry in settings.DATABASES.items():
        try:
            url = store_url(entry)
        except DjangoDatabaseError:
            continue
        if same_database(url, store.url):
            return alias
    return None


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlalchemy_connection(django_connection: Any) -> Connection:
    """A SQLAlchemy ``Connection`` over Django's own DBAPI connection, in its transaction.

    It never begins, commits or rolls back (SQLAlchemy's engine internals build such
    connections for their first-connect checks): the atomic block owns the transaction. The
    dialect matches Django's driver, and is initialised once per driver on Django's
    connection."""
    from sqlalchemy.pool.base import _AdhocProxiedConnection

    django_connection.ensure_connection()
    raw = django_connection.connection
    module = type(raw).__module__.split(".")[0]
    driver = _DBAPI_DRIVERS.get(module)
    if driver is None:
        raise DjangoDatabaseError(
            f"Django's connection uses the driver {module!r}, which the store cannot write "
            f"through (it knows {sorted(_DBAPI_DRIVERS)}); schedule outside atomic(), or put "
            "the store on another database")
    record: Any = _Record(raw)
    with _engines_lock:
        engine = _engines.get(driver)
        fresh = engine is None
        if engine is None:
            engine = create_engine(URL.create(driver))
        conn = Connection(engine, connection=_AdhocProxiedConnection(raw, record),
                          _has_events=False, _allow_revalidate=False, _allow_autobegin=False)
        if fresh:
            engine.dialect.initialize(conn)  # reads only (server version, ...)
            _engines[driver] = engine
    return conn


class _Record:
    """The pool record `_AdhocProxiedConnection` reads (no pool is involved)."""

    def __init__(self, raw: Any) -> None:
        self.driver_connection = raw
        self.info: dict[str, Any] = {}
        self.record_info: dict[str, Any] = {}
