"""``celery durable ui``: its place in the CLI, and its errors before it serves anything."""

from __future__ import annotations

import sys

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from celery_durable.cli import durable
from celery_durable.ui.command import MISSING_EXTRA


def _invoke(*args: str) -> Result:
    """``celery -A <an app without a Durable> durable *args``, in this process."""
    obj = CLIContext(app=Celery("plain", set_as_current=False), no_color=True, workdir=None)
    return CliRunner().invoke(durable, list(args), obj=obj)


def test_the_command_is_listed_in_the_durable_group() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0
    assert "ui         Serve the web dashboard (needs the ui extra)." in result.output


def test_without_the_extra_it_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tornado", None)  # import tornado now raises ImportError
    result = _invoke("ui")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {MISSING_EXTRA}"


@pytest.mark.parametrize(("args", "words"), [
    (["--basic-auth", "admin"], "--basic-auth must be USER:PASSWORD"),
    (["--basic-auth", ":secret"], "--basic-auth must be USER:PASSWORD"),
    (["--flower-url", "flower:5555"], "--flower-url must start with http://"),
    (["--port", "70000"], "Invalid value for '--port'"),
    (["--url-prefix", "http://proxy/durable"], "--url-prefix must be a URL path"),
    (["--url-prefix", "/a/../b"], "--url-prefix must be a URL path"),
    (["--url-prefix", "/with space"], "--url-prefix must be a URL path"),
])
def test_bad_options_are_refused(args: list[str], words: str) -> None:
    result = _invoke("ui", *args)
    assert result.exit_code != 0
    assert words in result.output
