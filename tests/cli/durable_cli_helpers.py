"""Helpers of the CLI tests: the e2e harness's ``make_app``/``Harness`` (a real worker, broker and
store) and a runner that invokes ``celery durable`` with an app, as ``celery -A`` does.

(A module of its own: ``from conftest import ...`` would find whichever conftest was imported
last when several test folders run together.)"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.bin.base import CLIContext
from celery.contrib.testing.worker import start_worker
from click.testing import CliRunner, Result

from celery_durable.cli import durable

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))  # `import workflows`, as e2e does
_e2e = importlib.import_module("e2e.conftest")  # tests/ is on sys.path (tests/conftest.py)
make_app = _e2e.make_app
Harness = _e2e.Harness


def invoke(app: Celery, *args: str) -> Result:
    """Run ``celery -A <app> durable *args`` in this process; stdout and stderr kept apart."""
    obj = CLIContext(app=app, no_color=True, workdir=None)
    return CliRunner().invoke(durable, list(args), obj=obj, catch_exceptions=True)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exactly one ``Error: ...`` line on stderr and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_worker(stack: contextlib.ExitStack, app: Celery) -> Any:
    app.set_current()
    return stack.enter_context(start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING",
        shutdown_timeout=30))
