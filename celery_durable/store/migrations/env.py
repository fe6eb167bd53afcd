"""Alembic environment of the store's schema.

`Store.create_schema` runs it on the store's own connection (``config.attributes["connection"]``).
It also works from the ``alembic`` command line (``sqlalchemy.url`` set in its ini file), and offline
(``alembic upgrade head --sql``) to print the DDL for a DBA.
"""

from __future__ import annotations

from alembic import context

from celery_durable.store.engine import make_engine
from celery_durable.store.schema import VERSION_TABLE, metadata

config = context.config


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (alembic -x or alembic.ini) to the store's URL")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=metadata,
                              version_table=VERSION_TABLE)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
