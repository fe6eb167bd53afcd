"""Which instance ids, event names, tags and reasons may be stored: checked before anything
is written, as payloads are (`celery_durable.payload`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from celery_durable.engine.history import utc
from celery_durable.errors import InvalidInstanceIdError, InvalidNameError
from celery_durable.payload import to_json

#: longest instance id or event name (characters), as the store's key columns hold
MAX_KEY_LENGTH = 256
#: control characters (C0, DEL, C1: Unicode category Cc) and lone surrogates (Cs), which no
#: database stores as text
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: an instance id: 1 to MAX_KEY_LENGTH characters, neither whitespace nor `_UNSAFE`
_INSTANCE_ID = re.compile(rf"[^\s\x00-\x1f\x7f-\x9f\ud800-\udfff]{{1,{MAX_KEY_LENGTH}}}")


def _unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


def check_instance_id(instance_id: Any) -> str:
    """Return ``instance_id``, or raise `InvalidInstanceIdError` if it is not a string of 1 to
    256 characters without whitespace or control characters."""
    if not (isinstance(instance_id, str) and _INSTANCE_ID.fullmatch(instance_id)):
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


def check_reason(reason: Any, what: str, limit: int) -> str | None:
    """Return the reason of a suspend or resume (None or a string), or raise: `TypeError` for
    another type, `PayloadTooLargeError` when its JSON is over ``limit`` bytes (it is stored
    in the history like a payload)."""
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"the reason to {what} must be a string or None, got {_shown(reason)}")
    if reason is not None:
        to_json(reason, f"the reason to {what}", limit=limit)
    return reason


def check_tags(tags: Any, limit: int) -> dict[str, str] | None:
    """Return ``tags`` (None or a dict of str to str), or raise: `TypeError` for another type,
    `InvalidNameError` for a key that is empty, over 256 characters or holds control
    characters, `PayloadTooLargeError` when their JSON is over ``limit`` bytes."""
    if tags is None:
        return None
    if not (isinstance(tags, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in tags.items())):
        raise TypeError(f"tags must be a dict of str to str, got {_shown(tags)}")
    for key in tags:
        if not (1 <= len(key) <= MAX_KEY_LENGTH and not _unsafe(key)):
            raise InvalidNameError(f"a tag name must be a string of 1 to {MAX_KEY_LENGTH} "
                                   f"characters without control characters, got {_shown(key)}")
    to_json(tags, "tags", limit=limit)
    return tags


def check_start_at(start_at: datetime | None) -> datetime | None:
    """``start_at`` in UTC (naive: read as UTC), or `ValueError` for a time that has no UTC
    equivalent (``9999-12-31T23:59-14:00`` is past year 9999 in UTC)."""
    if start_at is None:
        return None
    try:
        return utc(start_at)
    except OverflowError:
        raise ValueError(f"start_at {start_at.isoformat()} is past the last time a datetime "
                         "holds once converted to UTC; pass an earlier time") from None


def _shown(value: Any) -> str:
    """``repr(value)``, shortened to about 80 characters for a message."""
    text = repr(value)
    if len(text) <= 80:
        return text
    length = len(value) if isinstance(value, str) else len(text)
    return f"{text[:60]}... ({length} characters)"
