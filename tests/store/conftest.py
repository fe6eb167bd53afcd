"""Real databases for the store tests: SQLite (a temporary file), PostgreSQL and MariaDB.

Each backend gets fresh databases (``durable_t_<random>``) for this test session, dropped at its
end; a backend whose server is unreachable is skipped (see ``tests/services.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import services

from celery_durable.store import Store
from celery_durable.store.schema import INSTANCE_TABLES

BACKENDS = {"sqlite": None, "postgresql": "postgresql", "mysql": "mariadb"}


@pytest.fixture(scope="session", params=list(BACKENDS))
def new_database(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A factory of URLs of new, empty databases on one backend."""
    service = BACKENDS[request.param]
    if service is None:
        tmp = tmp_path_factory.mktemp("sqlite")
        yield lambda: f"sqlite:///{tmp / services.unique('durable_t')}.sqlite3"
        return
    services.require(service)
    with ExitStack() as stack:
        yield lambda: stack.enter_context(services.database(service))


@pytest.fixture(scope="session")
def store_url(new_database: Callable[[], str]) -> str:
    """One database per backend for the session, with the schema created."""
    url = new_database()
    store = Store(url)
    store.create_schema()
    store.dispose()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on the session database, emptied for this test."""
    store = Store(store_url)
    with store.engine.begin() as conn:
        for table in INSTANCE_TABLES:
            conn.execute(table.delete())
    yield store
    store.dispose()


@pytest.fixture
def backend(store: Store) -> str:
    return store.dialect
