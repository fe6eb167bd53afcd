"""The project's Celery app and its Durable (``celery -A proj worker``)."""

import os

from celery import Celery

from celery_durable import Durable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
# every CELERY_* Django setting, CELERY_DURABLE_STORE_URL included
app.config_from_object("django.conf:settings", namespace="CELERY")
durable = Durable(app)
app.autodiscover_tasks()
