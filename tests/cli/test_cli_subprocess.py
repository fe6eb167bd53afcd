"""``celery -A module durable ...`` as a real process: Celery's own command line loads the app,
the command talks to the store and broker the session's worker uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parents[1]
#: Celery's command line with the group added, as the ``celery.commands`` entry point adds it
CELERY_WITH_DURABLE = (
    "import sys\n"
    "from celery.bin.celery import celery\n"
    "from celery_durable.cli import durable\n"
    "celery.add_command(durable)\n"
    "sys.exit(celery.main(sys.argv[1:], prog_name='celery', auto_envvar_prefix='CELERY'))\n"
)


def _env(harness: Any) -> dict[str, str]:
    paths = [str(TESTS / "cli"), str(TESTS / "e2e"), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "DURABLE_CLI_BROKER": str(harness.tmp / "broker"),
            "DURABLE_CLI_QUEUE": harness.app.conf.task_default_queue,
            "DURABLE_CLI_STORE": harness.durable.store.url}


def celery(harness: Any, *args: str, program: list[str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    command = program or [sys.executable, "-c", CELERY_WITH_DURABLE]
    return subprocess.run([*command, "-A", "durable_cli_app", "durable", *args],
                          env=_env(harness), capture_output=True, text=True, timeout=60,
                          cwd=TESTS.parent, check=False)


def _one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines


def test_celery_command_line_runs_durable(cli_harness: Any) -> None:
    started = celery(cli_harness, "start", "e2e.sequence", "--input", "3", "--wait", "30",
                     "--json")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["status"] == "COMPLETED" and state["output"] == 3  # run by this session's worker

    listed = celery(cli_harness, "list", "--name", "e2e.sequence", "--limit", "10000")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("INSTANCE ID")
    assert any(line.startswith(state["instance_id"]) and "COMPLETED" in line
               for line in listed.stdout.splitlines())

    _one_line_error(celery(cli_harness, "history", "no-such-id"),
                    "no orchestration instance has id 'no-such-id'")
    _one_line_error(celery(cli_harness, "start", "e2e.sequence", "--input", "{bad"),
                    "--input must be JSON")


def test_installed_entry_point(cli_harness: Any) -> None:
    """Once pyproject.toml declares the entry point, plain ``celery`` finds the group."""
    if not any(ep.name == "durable" for ep in entry_points(group="celery.commands")):
        pytest.skip("the celery.commands entry point 'durable' is not installed yet")
    program = shutil.which("celery", path=str(Path(sys.executable).parent))
    assert program is not None
    proc = celery(cli_harness, "list", "--json", program=[program])
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)
    _one_line_error(celery(cli_harness, "show", "no-such-id", program=[program]),
                    "no orchestration instance")


def codeless(harness: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``celery -A durable_codeless_app durable ...``: a client that imports no orchestrator."""
    return subprocess.run([sys.executable, "-c", CELERY_WITH_DURABLE, "-A",
                           "durable_codeless_app", "durable", *args], env=_env(harness),
                          capture_output=True, text=True, timeout=60, cwd=TESTS.parent,
                          check=False)


def test_a_client_without_the_code_starts_by_name(cli_harness: Any) -> None:
    """The web tier's case: a process that imports no orchestrator (and configures its app after
    making its Durable) starts one by name; the session's worker, which has the code, runs it."""
    started = codeless(cli_harness, "start", "e2e.sequence", "--input", "3", "--wait", "30",
                       "--json")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["status"] == "COMPLETED" and state["output"] == 3
    # the same through the client API, in a process that never imports the workflows
    script = ("import sys, durable_codeless_app as m\n"
              "iid = m.durable.client.schedule_new_orchestration('e2e.sequence', input=2)\n"
              "print(iid, 'workflows' in sys.modules, m.durable.store.url)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=_env(cli_harness),
                          capture_output=True, text=True, timeout=60, cwd=TESTS.parent,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    iid, imported, url = proc.stdout.split()
    assert imported == "False" and url == cli_harness.durable.store.url
    final = cli_harness.durable.client.wait_for_orchestration_completion(iid, timeout=30)
    assert final.runtime_status.value == "COMPLETED" and final.output == 1  # 0 + 1


def test_a_closed_pipe_ends_the_command_quietly(cli_harness: Any) -> None:
    """``celery durable history ID | head -1``: the reader goes away before the output ends."""
    iid = cli_harness.client.schedule_new_orchestration("e2e.sequence", input=3)
    cli_harness.client.wait_for_orchestration_completion(iid, timeout=30)
    read, write = os.pipe()
    os.close(read)  # a reader that has gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-c", CELERY_WITH_DURABLE, "-A",
                               "durable_cli_app", "durable", "history", iid],
                              env=_env(cli_harness), stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=TESTS.parent, check=False)
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr
