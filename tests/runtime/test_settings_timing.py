"""``durable_*`` settings are read when first needed: a Durable made before its app is configured
uses the configured store, and a store URL that changes after the store was used is an error,
never a silent switch to another store."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery

from celery_durable import Durable
from celery_durable.errors import ConfigurationError


class Config:
    broker_url = "memory://"

    def __init__(self, store: Path) -> None:
        self.durable_store_url = f"sqlite:///{store}"
        self.durable_max_payload_bytes = 1234


def test_a_durable_made_before_the_configuration_uses_it(tmp_path: Path) -> None:
    app = Celery("early", set_as_current=False)
    durable = Durable(app)
    app.config_from_object(Config(tmp_path / "configured.sqlite3"))
    assert durable.store.url == f"sqlite:///{tmp_path / 'configured.sqlite3'}"
    assert durable.settings.max_payload_bytes == 1234
    assert durable.client.store is durable.store


def test_a_configuration_read_early_is_read_again(tmp_path: Path) -> None:
    app = Celery("read-early", set_as_current=False)
    app.conf.update(task_default_queue="q")  # loads the configuration before the Durable
    durable = Durable(app)
    assert durable.settings.max_payload_bytes == 4 * 1024 * 1024
    app.config_from_object(Config(tmp_path / "later.sqlite3"))
    assert durable.settings.max_payload_bytes == 1234
    assert durable.store.url.endswith("later.sqlite3")


def test_changing_the_store_after_using_it_is_an_error(tmp_path: Path) -> None:
    app = Celery("changed", set_as_current=False)
    app.config_from_object(Config(tmp_path / "first.sqlite3"))
    durable = Durable(app)
    durable.store.create_schema()
    app.config_from_object(Config(tmp_path / "second.sqlite3"))
    with pytest.raises(ConfigurationError, match="changed to 'sqlite:///.*second.sqlite3' after "
                       "this Durable had opened its store"):
        durable.client.get_orchestration_state("x")


def test_an_explicit_store_url_wins(tmp_path: Path) -> None:
    app = Celery("explicit", set_as_current=False)
    durable = Durable(app, store_url=f"sqlite:///{tmp_path / 'mine.sqlite3'}")
    app.config_from_object(Config(tmp_path / "other.sqlite3"))
    assert durable.store.url.endswith("mine.sqlite3")
    assert durable.settings.max_payload_bytes == 1234  # the other settings come from the app


def test_a_relative_sqlite_store_is_logged_with_its_folder(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = Celery("default", broker="memory://", set_as_current=False)
    with caplog.at_level("INFO", logger="celery_durable.runtime.durable"):
        assert Durable(app).store.url == "sqlite:///celery_durable.sqlite3"
    assert f"the store is sqlite:///celery_durable.sqlite3, a SQLite file relative to the " \
           f"current folder {tmp_path}" in caplog.text
