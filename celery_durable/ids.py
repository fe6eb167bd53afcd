"""Which instance ids and event names may be stored: checked before anything is written."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from celery_durable.errors import InvalidInstanceIdError, InvalidNameError

#: longest instance id or event name (characters), as the store's key columns hold
MAX_KEY_LENGTH = 256
_NO_WHITESPACE = re.compile(r"[^\s]+")
#: control characters (C0, DEL, C1) and lone surrogates, which no database stores as text
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs"})


def _unsafe(text: str) -> bool:
    return any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in text)


def check_instance_id(instance_id: Any) -> str:
    """Return ``instance_id``, or raise `InvalidInstanceIdError` if it is not a string of 1 to
    256 characters without whitespace or control characters."""
    if not (isinstance(instance_id, str) and 1 <= len(instance_id) <= MAX_KEY_LENGTH
            and _NO_WHITESPACE.fullmatch(instance_id) and not _unsafe(instance_id)):
        raise InvalidInstanceIdError(
            f"instance id must be a string of 1 to {MAX_KEY_LENGTH} characters without spaces "
            f"or control characters, got {_shown(instance_id)}")
    return instance_id


def check_event_name(name: Any) -> str:
    """Return ``name``, or raise `InvalidNameError` if it is not a string of 1 to 256
    characters without control characters."""
    if not (isinstance(name, str) and 1 <= len(name) <= MAX_KEY_LENGTH and not _unsafe(name)):
        raise InvalidNameError(
            f"event name must be a string of 1 to {MAX_KEY_LENGTH} characters without control "
            f"characters, got {_shown(name)}")
    return name


def check_orchestrator_name(name: Any) -> str:
    """Return ``name``, or raise `InvalidNameError` if it cannot name an orchestrator (a string
    of 1 to 256 characters without control characters). Whether a worker knows the name is
    decided where the code runs (see `EpisodeRunner`), not here."""
    if not (isinstance(name, str) and 1 <= len(name) <= MAX_KEY_LENGTH and not _unsafe(name)
            and name.strip() == name):
        raise InvalidNameError(
            f"orchestrator name must be a string of 1 to {MAX_KEY_LENGTH} characters without "
            f"control characters or surrounding spaces, got {_shown(name)}")
    return name


def _shown(value: Any) -> str:
    """``repr(value)``, shortened to about 80 characters for a message."""
    text = repr(value)
    if len(text) <= 80:
        return text
    length = len(value) if isinstance(value, str) else len(text)
    return f"{text[:60]}... ({length} characters)"
