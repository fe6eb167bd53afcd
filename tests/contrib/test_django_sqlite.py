"""Django on SQLite, with the store in the same file: a start inside ``atomic()`` is written
through Django's sqlite3 connection and sent after the commit; a rollback leaves nothing. Run in
a subprocess (it configures Django's settings, which a process does once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = '''
import django
from django.conf import settings

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                          "NAME": "db.sqlite3",
                                          "OPTIONS": {"transaction_mode": "IMMEDIATE"}}},
                   INSTALLED_APPS=[], USE_TZ=True)
django.setup()
from celery import Celery
from django.db import connection, transaction

from celery_durable import Durable
from celery_durable.contrib.django import store_url
from celery_durable.runtime import messages

sent = []
messages.publish = lambda app, msgs: sent.extend(m["args"][0] for m in msgs)
durable = Durable(Celery("sqlite-check", broker="memory://"), store_url=store_url("default"))
assert durable.store.url.startswith("sqlite:////")
durable.store.create_schema()


@durable.orchestrator(name="noop")
def noop(ctx, x):
    return x


client = durable.client
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE orders (item text)")
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders VALUES ('book')")
    kept = client.schedule_new_orchestration(noop, input=1)
    assert sent == []
assert sent == [kept], sent
assert client.get_orchestration_state(kept) is not None
try:
    with transaction.atomic():
        lost = client.schedule_new_orchestration(noop, input=2)
        with transaction.atomic():  # a savepoint that commits: still nothing sent
            client.schedule_new_orchestration(noop, input=3, instance_id="inner")
        assert sent == [kept], sent
        raise KeyError("rolled back")
except KeyError:
    pass
assert client.get_orchestration_state(lost) is None
assert client.get_orchestration_state("inner") is None
assert sent == [kept], sent
print("ok")
'''


def test_django_on_sqlite_joins_atomic_blocks(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"
