"""Keep the store URL's password out of ``celery report``.

Celery's bug report (``celery report``) masks the settings whose names match
``celery.app.utils.HIDDEN_SETTINGS`` and the broker and backend URLs. ``durable_store_url``
matches neither, and reports get pasted into public issues, so its name is added to the pattern.
"""

from __future__ import annotations

import re

from celery.app import utils

HIDDEN_NAME = "STORE_URL"


def hide_store_url_in_reports() -> None:
    """Extend Celery's pattern of hidden setting names with ``STORE_URL`` (idempotent)."""
    pattern = utils.HIDDEN_SETTINGS
    if HIDDEN_NAME not in pattern.pattern:
        utils.HIDDEN_SETTINGS = re.compile(f"{pattern.pattern}|{HIDDEN_NAME}", pattern.flags)
