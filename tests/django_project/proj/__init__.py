"""The test project: Celery's "First steps with Django" layout with celery_durable."""

# the Celery app is loaded when Django starts, so that shared tasks use it
from .celery import app as celery_app

__all__ = ("celery_app",)
