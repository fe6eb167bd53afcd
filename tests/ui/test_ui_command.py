"""``celery durable ui``: its place in the CLI, and its errors before it serves anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from celery_durable.cli import durable
from celery_durable.ui.auth import BasicAuth
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


SECRET = "hunter2-" + "q" * 6


@pytest.mark.parametrize(("args", "env", "words"), [
    # an empty variable is a mistake, not "no auth"
    ([], {"DURABLE_UI_BASIC_AUTH": ""}, "DURABLE_UI_BASIC_AUTH must be USER:PASSWORD"),
    ([], {"DURABLE_UI_BASIC_AUTH": "  "}, "got a value empty"),
    ([], {"DURABLE_UI_BASIC_AUTH": SECRET}, "without a ':'"),
    (["--basic-auth", SECRET], {}, "--basic-auth must be USER:PASSWORD"),
    (["--basic-auth", f"admin:{SECRET}", "--basic-auth-file", "/x"], {}, "give the "
                                                                          "credentials once"),
    (["--basic-auth-file", "/no/such/file"], {}, "cannot read --basic-auth-file"),
    # every interface without auth: refused unless explicitly insecure
    (["--address", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without basic auth"),
    (["--address", "::"], {}, "refusing to listen on :: without basic auth"),
    (["--address", "10.1.2.3"], {}, "--insecure-no-auth"),
    (["--allowed-hosts", "http://dash.example.com"], {}, "--allowed-hosts takes host names"),
    (["--allowed-hosts", "dash.example.com:443"], {}, "--allowed-hosts takes host names"),
])
def test_credentials_and_exposure_are_checked_before_serving(
        args: list[str], env: dict[str, str], words: str) -> None:
    obj = CLIContext(app=Celery("plain", set_as_current=False), no_color=True, workdir=None)
    result = CliRunner().invoke(durable, ["ui", *args], obj=obj, env=env)
    assert result.exit_code != 0
    assert words in result.output, result.output
    assert SECRET not in result.output  # a malformed value may be a password: never echoed


@pytest.mark.parametrize("args", [
    ["--address", "0.0.0.0", "--insecure-no-auth"],
    ["--address", "::", "--basic-auth", "admin:pw"],
    ["--address", "127.0.0.2"],  # loopback: no auth needed
])
def test_an_exposed_address_is_accepted_with_auth_or_the_flag(args: list[str]) -> None:
    """Past the checks, the command needs the app's Durable (this app has none): the error
    proves the address was accepted, without listening anywhere."""
    result = _invoke("ui", *args)
    assert result.exit_code != 0
    assert "refusing to listen" not in result.output
    assert "Durable" in result.output, result.output


def test_credentials_come_from_a_file(tmp_path: Path) -> None:
    from celery_durable.ui.command import _credentials

    secret = tmp_path / "credentials"
    secret.write_text("admin:pw:with:colons\n")
    assert _credentials(None, secret) == BasicAuth("admin", "pw:with:colons")
    secret.write_text("\n")
    with pytest.raises(ValueError, match="--basic-auth-file .* got a value empty"):
        _credentials(None, secret)
