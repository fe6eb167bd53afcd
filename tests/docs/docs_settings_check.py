"""Check a ``celeryconfig.py`` block of the docs: ``python docs_settings_check.py FILE``.

Prints a JSON list of problems (empty when every name the file assigns is a Celery setting, or a
``durable_*`` setting that ``DurableSettings.from_conf`` reads with the value given, and every
``beat_schedule`` entry names a registered task). Run in the page's folder: the file may create
folders there, as the quickstart's does.
"""

from __future__ import annotations

import inspect
import json
import runpy
import sys
from dataclasses import fields
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.app.defaults import NAMESPACES, flatten

from celery_durable.runtime import messages
from celery_durable.runtime.settings import DurableSettings


def settings_of(path: str) -> dict[str, Any]:
    namespace = runpy.run_path(path)
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and not inspect.ismodule(value)
            and not inspect.isclass(value) and not inspect.isfunction(value)}


def expected(field_type: Any, value: Any) -> Any:
    if isinstance(value, timedelta) or value is None:
        return value
    if field_type in ("timedelta", timedelta):
        return timedelta(seconds=float(value))
    return value


def problems(path: str) -> list[str]:
    found: list[str] = []
    values = settings_of(path)
    celery_names = {name for name, _ in flatten(NAMESPACES)}
    durable_fields = {f"durable_{f.name}": f for f in fields(DurableSettings)}
    app = Celery("docs-settings", set_as_current=False)
    app.conf.update(values)
    settings = DurableSettings.from_conf(app.conf)
    for name, value in values.items():
        if name in durable_fields:
            field = durable_fields[name]
            got = getattr(settings, field.name)
            want = expected(field.type, value)
            if want is None:  # None means "the default" for every durable_* setting
                want = getattr(DurableSettings(), field.name)
            if got != want:
                found.append(f"{name} = {value!r} is read as {got!r}")
        elif name not in celery_names:
            found.append(f"{name} is neither a Celery setting nor a durable_* setting "
                         f"({', '.join(sorted(durable_fields))})")
    tasks = {messages.EPISODE_TASK, messages.TIMER_TASK, messages.SWEEP_TASK}
    for entry, schedule in (values.get("beat_schedule") or {}).items():
        if schedule.get("task") not in tasks:
            found.append(f"beat_schedule[{entry!r}] runs {schedule.get('task')!r}, which "
                         f"celery_durable does not register ({sorted(tasks)})")
    return found


if __name__ == "__main__":
    print(json.dumps(problems(sys.argv[1])))
