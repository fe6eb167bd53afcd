"""``ctx.send_event``: an event one orchestration raises on another.

The sender's episode records ``EventSent`` in its history and, in the same commit, writes the
event to the target's inbox (``commit.notify``) with a dedup key made of the sender's instance,
execution and task id, plus the target's wake-up in the outbox. A crash before the commit
writes neither (the replayed episode sends it again under the same key); a crash after it has
both: the event is delivered once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from celery_durable.engine import history as h
from celery_durable.engine.actions import SendEvent
from celery_durable.store import EpisodeCommit, InboxItem

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)


def sent_event_key(sender: str, execution_id: str, task_id: int) -> str:
    """The target's inbox dedup key of a sent event."""
    return f"sent:{sender}:{execution_id}:{task_id}"


def send_event(durable: Durable, sender: str, execution_id: str, action: SendEvent,
               commit: EpisodeCommit, now: datetime) -> None:
    """Add the event of ``action`` to the commit of ``sender``'s episode (or log why not)."""
    target = durable.store.get_instance(action.instance_id)
    if target is None:
        logger.warning("orchestration %s sent event %r to %s, which does not exist: dropped",
                       sender, action.name, action.instance_id)
        return
    event = h.event_raised(action.name, action.data, now)
    key = sent_event_key(sender, execution_id, action.task_id)
    commit.notify.append((action.instance_id, InboxItem(key, event)))
    commit.outbox.append(durable.episode_message(action.instance_id, target.name))
