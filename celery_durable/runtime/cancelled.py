"""Work cancelled by a suspend (``suspend_orchestration(..., cancel_running=True)``) is sent
again when the instance is resumed.

The suspend revoked the instance's running activities and Celery tasks (killed, and their
Celery task ids refused by the workers from then on). The episode that applies the resume finds
the work scheduled and still without a result, and sends it again, in its own commit's outbox,
under Celery task ids of its own (the revoked ids suffixed with the suspend's history seq).
Rare, so it reads the whole history; other episodes only check their new events' kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery_durable.engine import history as h
from celery_durable.store import EpisodeCommit, InstanceRecord

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable
    from celery_durable.store import Episode


def resend_after_resume(durable: Durable, ep: Episode, inst: InstanceRecord,
                        new_events: Sequence[h.HistoryEvent], commit: EpisodeCommit) -> None:
    """Add to ``commit`` the messages of the work a cancelling suspend stopped, if the episode
    (its ``new_events``) resumes the instance after one."""
    if not any(e.kind == h.EXECUTION_RESUMED for e in new_events) or commit.new_execution:
        return
    from celery_durable.management import rerun_messages

    events = [*ep.load_history(0), *new_events]
    suspend: h.HistoryEvent | None = None
    scheduled: dict[int, h.HistoryEvent] = {}
    done: set[int] = set()
    for event in events:
        if event.kind == h.EXECUTION_SUSPENDED:
            suspend = event
        elif event.kind == h.EXECUTION_RESUMED:
            if event.seq >= inst.history_len and suspend is not None and \
                    _cancelled(suspend.data):
                break  # this episode resumes after a cancelling suspend
            suspend = None
        elif event.kind == h.TASK_SCHEDULED and event.task_id is not None:
            scheduled[event.task_id] = event
        elif event.kind in (h.TASK_COMPLETED, h.TASK_FAILED) and event.task_id is not None:
            done.add(event.task_id)
    else:
        return
    assert suspend is not None
    # results that arrived while suspended were buffered and come after the resume
    done.update(e.task_id for e in events if e.kind in (h.TASK_COMPLETED, h.TASK_FAILED)
                and e.task_id is not None)
    reopened = [e for task_id, e in sorted(scheduled.items()) if task_id not in done]
    commit.outbox.extend(rerun_messages(durable, inst, inst.execution_id, reopened,
                                        wake=False, id_suffix=f":resumed{suspend.seq}"))


def _cancelled(data: Any) -> bool:
    return isinstance(data, dict) and bool(data.get("cancel_running"))
