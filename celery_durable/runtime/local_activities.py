"""Local activities: run by the episode itself, before it commits, with no broker hop.

The engine stays pure: ``ctx.call_local_activity`` schedules an ordinary `ScheduleActivity`
marked ``local``, recorded as ``TaskScheduled`` with ``local: true``. The episode runner hands
the engine's result to `run_local_activities`, which runs those activities in this process and
feeds their outcomes back to the engine as the ordinary ``TaskCompleted`` / ``TaskFailed``
events an activity's worker would have recorded; what the code schedules next (perhaps another
local activity) is run the same way, and everything lands in the episode's one commit.

Bounds on one commit (what a crash before it runs again, at least once):

- ``durable_local_activity_batch`` (default 20) local activities at most;
- ``durable_local_activity_batch_seconds`` (default 2.0): no new local activity starts once the
  batch has run this long.

A local activity left over by a bound is sent, after the commit, as an activity message on the
instance's episode queue: a worker of the same Durable runs it, records it and runs the next
episode inline, which goes on with the next batch.

A retry of a failed local activity whose delay (``RetryPolicy``) ends within the batch's time
bound and within ``durable_local_activity_retry_wait_seconds`` (default 1.0) is waited for in
this process (its timer is recorded as created and fired); a longer one stays a durable timer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from celery_durable.engine import history as h
from celery_durable.engine.actions import Action, CreateTimer, ScheduleActivity
from celery_durable.engine.executor import EpisodeResult, Orchestration
from celery_durable.engine.failure import FailureDetails
from celery_durable.errors import UnknownNameError
from celery_durable.payload import from_json, input_annotation, to_json
from celery_durable.runtime.messages import activity_task_id

if TYPE_CHECKING:
    from celery_durable.runtime.durable import Durable

logger = logging.getLogger(__name__)


@dataclass
class LocalRun:
    """What `run_local_activities` did: the merged result and when it ended."""

    result: EpisodeResult
    now: datetime
    #: local activities run (attempts), retry waits waited in-process
    ran: int = 0
    waited: int = 0


def is_local(action: Action) -> bool:
    return isinstance(action, ScheduleActivity) and action.local


def run_local_activities(durable: Durable, instance_id: str, execution_id: str,
                         state: Orchestration, result: EpisodeResult, now: datetime,
                         clock: Callable[[], float] = time.monotonic) -> LocalRun:
    """Run the local activities ``result`` asks for (and those they lead to), within the
    bounds of ``durable.settings``, feeding each outcome back to ``state``; the returned
    result covers the whole batch. Actions left over stay in it for the runner to plan."""
    settings = durable.settings
    batch, seconds = settings.local_activity_batch, settings.local_activity_batch_seconds
    retry_wait = settings.local_activity_retry_wait_seconds
    run = LocalRun(result, now)
    started = clock()

    def wall() -> datetime:  # the episode's time (a test's clock, in the harness) + elapsed
        return now + timedelta(seconds=clock() - started)
    while not run.result.is_finished:
        events: list[h.HistoryEvent] = []
        handled: set[int] = set()
        for action in run.result.actions:
            if clock() - started >= seconds:
                break
            if is_local(action):
                if run.ran >= batch:
                    break
                assert isinstance(action, ScheduleActivity)
                events.append(_run_one(durable, instance_id, execution_id, action, wall))
                run.ran += 1
                handled.add(id(action))
            elif isinstance(action, CreateTimer) and \
                    state.retries_local_activity(action.task_id):
                delay = (action.fire_at - wall()).total_seconds()
                left = seconds - (clock() - started)
                if delay > min(retry_wait, left):
                    continue  # a durable timer, committed with the episode
                if delay > 0:
                    time.sleep(delay)  # a retry delay of the policy, bounded above
                events.append(h.timer_fired(action.task_id, action.fire_at, wall()))
                run.waited += 1
                handled.add(id(action))
        if not events:
            break
        rest = [a for a in run.result.actions if id(a) not in handled]
        run.now = max(run.now, wall())
        _merge(run.result, rest, state.run(events, run.now))
    return run


def _run_one(durable: Durable, instance_id: str, execution_id: str,
             action: ScheduleActivity, wall: Callable[[], datetime]) -> h.HistoryEvent:
    """Run one attempt of a local activity here; its completion (or failure) event."""
    # an ActivityContext like a remote run's; imported here (activity imports the runner)
    from celery_durable.runtime.activity import ActivityContext

    task = durable.app.tasks.get(action.name)
    definition = getattr(task, "durable_definition", None)  # as registered (or mocked)
    if definition is None:
        try:
            definition = durable.registry.activity(action.name)
        except UnknownNameError as exc:
            return h.task_failed(action.task_id, FailureDetails(str(exc), type(exc).__name__),
                                 wall())
    ctx = ActivityContext(instance_id, action.task_id, action.attempt,
                          activity_task_id(instance_id, execution_id, action.task_id,
                                           action.attempt))
    try:
        value = definition.fn(ctx, from_json(action.input, input_annotation(definition.fn)))
        output = to_json(value, f"result of local activity {action.name!r}",
                         limit=durable.settings.max_payload_bytes)
    except Exception as exc:  # noqa: BLE001 - user code: any exception fails the attempt
        logger.info("local activity %s (task %s of %s, attempt %s) failed: %s", action.name,
                    action.task_id, instance_id, action.attempt, exc)
        return h.task_failed(action.task_id, FailureDetails.from_exception(exc), wall())
    return h.task_completed(action.task_id, output, wall())


def _merge(into: EpisodeResult, actions: list[Action], then: EpisodeResult) -> None:
    """``into`` followed by ``then`` (the engine's next run on the local outcomes)."""
    into.new_events.extend(then.new_events)
    into.actions = actions + then.actions
    into.discarded.extend(then.discarded)
    into.status, into.output, into.failure = then.status, then.output, then.failure
    into.custom_status = then.custom_status
    into.continue_as_new = then.continue_as_new

