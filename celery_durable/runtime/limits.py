"""``@orchestrator(concurrency_limit=N)`` in the episode runner and the sweeper.

The store decides admissions (`celery_durable.store.limits`: why at most N run at once); here
an episode about to start an instance of a limited orchestrator asks for admission (refused: it
commits nothing, the start waits in the inbox, and no one polls it), and the commit of an episode
that admits, or ends, an instance carries the wake-up of the next waiting one in its outbox
(published after the commit, as every message of an episode is). The sweeper is the safety net:
for each limited orchestrator it knows, one query finds whether a slot is free and the oldest
waiting instance has waited past the recovery grace (its wake-up was lost), and wakes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from celery_durable.engine import history as h
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.registry import OrchestratorDef
from celery_durable.runtime import messages
from celery_durable.store import Episode, EpisodeCommit, InboxRow
from celery_durable.store import limits as slots

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)


def admission(durable: Durable, ep: Episode, definition: OrchestratorDef,
              rows: Sequence[InboxRow], now: datetime) -> list[messages.Message] | None:
    """For an episode of a limited orchestrator: None when it must not start the instance now
    (it then commits nothing); else the wake-ups its commit sends (the next waiting instance,
    when a slot is still free)."""
    inst, limit = ep.instance, definition.concurrency_limit
    if limit is None or inst.status is not OrchestrationStatus.PENDING or inst.history_len:
        return []
    kinds = {row.event.kind for row in rows}
    if h.EXECUTION_STARTED not in kinds or h.EXECUTION_TERMINATED in kinds:
        return []  # (terminating a waiting instance needs no slot)
    admitted, wake = slots.admit(ep.connection, ep.dialect, inst.name, inst.instance_id,
                                 limit, now)
    if not admitted:
        # (an older instance goes first: its own wake-up is on its way, or, lost, the sweeper's)
        logger.debug("instance %s waits for a slot of %r (limit %d)", inst.instance_id,
                     inst.name, limit)
        return None
    return [durable.episode_message(i, inst.name) for i in wake]


def after_commit_plan(durable: Durable, ep: Episode, definition: OrchestratorDef,
                      commit: EpisodeCommit, admitted: list[messages.Message],
                      now: datetime) -> None:
    """Add to ``commit``'s outbox the wake-ups of the waiting instances it lets start: those of
    its admission, and, when the instance ends, the oldest waiting one (its slot is free)."""
    if definition.concurrency_limit is None:
        return
    commit.outbox.extend(admitted)
    if not OrchestrationStatus(commit.status_value()).is_terminal:
        return
    inst = ep.instance
    queue = [i for i in slots.waiting(ep.connection, inst.name, now, 2) if i != inst.instance_id]
    commit.outbox.extend(durable.episode_message(i, inst.name) for i in queue[:1])


def limited_names(durable: Durable) -> list[str]:
    """The orchestrators with a concurrency limit that this process knows."""
    return sorted(name for name, d in durable.registry.orchestrators.items()
                  if d.concurrency_limit is not None)


def wake_stalled(durable: Durable, now: datetime) -> int:
    """The sweeper's safety net: wake the oldest waiting instance of each limited orchestrator
    that has a free slot, if it waited past the recovery grace and no wake-up of it is on its
    way; return how many were woken."""
    store, woken = durable.store, 0
    older = now - durable.settings.recovery_grace
    for name in limited_names(durable):
        limit = durable.registry.orchestrators[name].concurrency_limit
        assert limit is not None
        for instance_id in store.stalled_waiting(name, limit, now, older):
            store.forget_wakeups([instance_id])
            if store.request_wakeup(instance_id):
                durable.wake(instance_id, name)
                woken += 1
    return woken
