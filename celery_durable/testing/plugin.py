"""The pytest plugin (entry point ``pytest11``): the ``durable_env`` fixture.

Loaded in every pytest session where celery-durable is installed, so it imports nothing heavy
until a test asks for the fixture. Configuration (command line, or the ini file):

- ``--durable-store-url URL`` / ``durable_store_url``: the store (default: SQLite in the test's
  ``tmp_path``); instances a test started there are purged when it ends;
- ``--durable-app MODULE[:ATTR]`` / ``durable_app``: the Celery app (or ``Durable``) whose
  orchestrators and activities the environment runs besides the module-level ones, e.g.
  ``proj.celery:app`` (a module alone is searched as ``celery -A`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from celery_durable.testing.env import DurableTestEnv


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("celery_durable", "celery-durable test environment")
    group.addoption("--durable-store-url", dest="durable_store_url", default=None,
                    metavar="URL", help="store of the durable_env fixture (default: SQLite in "
                                        "the test's tmp_path)")
    group.addoption("--durable-app", dest="durable_app", default=None, metavar="MODULE[:ATTR]",
                    help="Celery app (or Durable) whose definitions durable_env runs")
    parser.addini("durable_store_url", "store of the durable_env fixture", default="")
    parser.addini("durable_app", "Celery app (or Durable) whose definitions durable_env runs",
                  default="")


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name) or config.getini(name)
    return str(value) if value else None


def load_app(reference: str) -> Any:
    """The Celery app or Durable named by ``module:attr`` (or found in ``module`` as
    ``celery -A module`` finds it)."""
    if ":" in reference:
        from celery.utils.imports import symbol_by_name

        return symbol_by_name(reference)
    from celery.app.utils import find_app

    return find_app(reference)


@pytest.fixture
def durable_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DurableTestEnv]:
    """Orchestrations run in this process, on the real engine and store, with activities
    executed eagerly and a test clock (see `celery_durable.testing.DurableTestEnv`)."""
    from celery_durable.testing.env import DurableTestEnv

    config = request.config
    url = _setting(config, "durable_store_url")
    reference = _setting(config, "durable_app")
    env = DurableTestEnv(url or f"sqlite:///{tmp_path / 'durable.sqlite3'}",
                         app=load_app(reference) if reference else None,
                         purge_on_close=url is not None)
    try:
        yield env
    finally:
        env.close()
