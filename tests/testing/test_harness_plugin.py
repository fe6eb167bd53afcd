"""The pytest plugin: installed with the package (entry point ``pytest11``), configured by the
command line or the ini file, and lazy (the environment loads when a test asks for it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from services import database

APP_MODULE = '''
from celery import Celery
from celery_durable import Durable

app = Celery("pluginshop", set_as_current=False)
durable = Durable(app, store_url="sqlite:///never-used.sqlite3")


@durable.activity(name="pluginshop.double")
def double(ctx, n):
    return 2 * n


@durable.orchestrator(name="pluginshop.flow")
def flow(ctx, n):
    return (yield ctx.call_activity(double, input=n))
'''

TESTS = '''
def test_the_apps_definitions_on_the_given_store(durable_env):
    assert durable_env.store.dialect == "{dialect}"
    iid = durable_env.schedule_new_orchestration("pluginshop.flow", input=21)
    assert durable_env.wait_for_orchestration_completion(iid).output == 42


def test_each_test_gets_a_fresh_environment(durable_env):
    assert durable_env.query_orchestrations(name="pluginshop.flow").items == []
'''


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=folder, capture_output=True, text=True, timeout=120,
                          check=False)


def test_plugin_options(tmp_path: Path) -> None:
    """``durable_app`` from the ini file, ``--durable-store-url`` from the command line (the
    default store, SQLite in tmp_path, is what the other tests of this folder use)."""
    (tmp_path / "pluginshop.py").write_text(APP_MODULE)
    (tmp_path / "test_shop.py").write_text(textwrap.dedent(TESTS.format(dialect="postgresql")))
    (tmp_path / "pytest.ini").write_text("[pytest]\ndurable_app = pluginshop:app\n")
    with database("postgresql", "durable_plugin") as url:
        proc = run_pytest(tmp_path, "--durable-store-url", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    assert not (tmp_path / "never-used.sqlite3").exists()  # the app's own store is left alone


def test_loading_the_plugin_loads_no_environment() -> None:
    code = ("import sys, celery_durable.testing.plugin as p; "
            "print(sorted(m for m in sys.modules if m.startswith('celery_durable.testing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['celery_durable.testing', 'celery_durable.testing.plugin']"
