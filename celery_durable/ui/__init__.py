"""The orchestration dashboard: ``celery -A proj durable ui`` (the ``ui`` extra, Tornado).

Only `command` is imported by the CLI; the web framework is imported when the command runs, so
the package works without the extra (the command then says how to install it).
"""
