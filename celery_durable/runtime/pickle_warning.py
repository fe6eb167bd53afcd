"""A warning at worker start when the app accepts pickled messages.

A Celery worker runs whatever a message names with the arguments it carries. With ``pickle`` in
``accept_content`` (or ``result_accept_content``), anyone who can publish to the broker can make
the worker run code of their choosing while the message is unpickled, activity calls included:
celery_durable itself only sends JSON, so pickle is never needed for it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

logger = logging.getLogger("celery_durable.security")

#: the content types that carry pickles
PICKLE_TYPES = frozenset({"pickle", "application/x-python-serialize"})


def pickle_settings(conf: Any) -> list[str]:
    """The names of the app's settings that accept pickled messages."""
    found = []
    for name in ("accept_content", "result_accept_content"):
        value = conf.get(name) or ()
        if isinstance(value, str):
            value = [value]
        if any(str(item).strip().lower() in PICKLE_TYPES for item in value):
            found.append(name)
    return found


class PickleWarningStep(bootsteps.Step):
    """Worker bootstep: log a warning when the app accepts pickle (see the module docstring)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        settings = pickle_settings(worker.app.conf)
        if settings:
            logger.warning(
                "this worker accepts pickled messages (%s includes pickle): anyone who can "
                "publish to the broker can run code in it, through any task, activities "
                "included. celery_durable sends only JSON; remove pickle unless another task "
                "needs it (accept_content=['json'])", " and ".join(settings))
