"""Settings of the test project: one PostgreSQL database (``SHOP_DB_NAME``) for Django and the
store, Redis as the broker (``SHOP_BROKER_URL``), a queue of the test's own (``SHOP_QUEUE``)."""

import os

from celery_durable.contrib.django import store_url

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
ROOT_URLCONF = "proj.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SHOP_DB_NAME", "shop"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}

CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/14")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("SHOP_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# the store on Django's own database: starts inside atomic() join its transaction
# (SHOP_STORE_URL: a store elsewhere, whose starts wait for the commit)
CELERY_DURABLE_STORE_URL = os.environ.get("SHOP_STORE_URL") or store_url(DATABASES["default"])
CELERY_DURABLE_SWEEP_INTERVAL = 0.5
CELERY_DURABLE_RECOVERY_GRACE = 2
