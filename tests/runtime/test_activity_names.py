"""An activity's default name is the same in a program run as a script and in the worker.

API.md: "An activity stays an ordinary Celery task: ``charge.delay(order)`` works" — also from a
program run as ``python greet.py``, where the module is ``__main__`` to Python while the worker
imports it as ``greet``: both must call the activity ``greet.touch``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = '''\
from celery import Celery

from celery_durable import activity

app = Celery("greet")


@activity
def touch(ctx, path):
    return path


if __name__ == "__main__":
    print(touch.name)
'''


def test_activity_name_is_the_same_in_a_script_and_in_the_worker(tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(PROGRAM)

    def output(*args: str) -> str:
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True)
        return proc.stdout.strip()

    in_worker = output("-c", "import greet; print(greet.touch.name)")  # celery -A greet worker
    in_script = output("greet.py")  # python greet.py
    assert in_worker == "greet.touch"
    assert in_script == in_worker


def test_a_lambda_activity_registers_and_runs() -> None:
    """Celery exec's ``def <task function name>(...)`` to check arguments: an activity whose
    function is a lambda must not break the app it is registered on."""
    from celery import Celery

    from celery_durable import Durable

    app = Celery("lambdas", broker="memory://", set_as_current=False)
    durable = Durable(app, store_url="sqlite://")
    double = durable.activity(lambda ctx, n: 2 * n, name="lambdas.double")
    app.finalize()
    task = app.tasks["lambdas.double"]
    assert task.apply(args=[21]).get() == 42
    assert double.name == "lambdas.double"
