"""The local services tests use for real: each test session gets its own databases and queues.

PostgreSQL (127.0.0.1:5432, user postgres, trust), MariaDB (127.0.0.1:3306, root, no password),
Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672, guest/guest). A service that is down makes
the tests that need it skip with the reason (``.ci/run`` starts them all before the suite).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"
REDIS_URL = "redis://127.0.0.1:6379"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
PORTS = {"postgresql": 5432, "mariadb": 3306, "redis": 6379, "rabbitmq": 5672}


def reachable(service: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PORTS[service]), timeout=1):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    if not reachable(service):
        pytest.skip(f"{service} is not running on 127.0.0.1:{PORTS[service]}")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def database(kind: str, prefix: str = "durable_t") -> Iterator[str]:
    """Create a fresh database on PostgreSQL or MariaDB, yield its SQLAlchemy URL, drop it."""
    require(kind)
    admin_url = PG_ADMIN if kind == "postgresql" else MARIADB_ADMIN
    name = unique(prefix)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
