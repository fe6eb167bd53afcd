"""Schedules and concurrency limits in the ``durable_env`` harness: ticks fired by the sweeper at
the test clock's times, outages of all workers skipped over with `simulate_outage`, overlap and
catch-up policies, pause / resume / trigger / delete, and FIFO admission under a limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_durable import (
    InvalidScheduleError,
    OrchestrationStatus,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    orchestrator,
)
from celery_durable.runtime.sweeper import sweep
from celery_durable.testing import DurableTestEnv

START = datetime(2026, 1, 5, 12, 0, 0, tzinfo=timezone.utc)  # a Monday, on the minute
Status = OrchestrationStatus


@orchestrator(name="sched.tick")
def tick(ctx, payload):  # type: ignore[no-untyped-def]
    return {"at": ctx.current_utc_datetime.isoformat(), "payload": payload}


@orchestrator(name="sched.slow")
def slow(ctx, seconds):  # type: ignore[no-untyped-def]
    yield ctx.create_timer(timedelta(seconds=seconds))
    return seconds


@orchestrator(name="sched.limited", concurrency_limit=2)
def limited(ctx, seconds):  # type: ignore[no-untyped-def]
    yield ctx.create_timer(timedelta(seconds=seconds))
    return ctx.instance_id


@pytest.fixture
def env() -> DurableTestEnv:
    with DurableTestEnv(start=START) as environment:
        yield environment


def _runs(env: DurableTestEnv, schedule_id: str) -> list[str]:
    page = env.query_orchestrations(limit=1000)
    return sorted(s.instance_id for s in page.items if s.instance_id.startswith(schedule_id + "@"))


def test_interval_ticks_fire_once_each_at_their_time(env: DurableTestEnv) -> None:
    schedule = env.create_schedule("every-minute", tick, input="x",
                                   interval=timedelta(minutes=1))
    assert schedule.next_run_at == START and schedule.last_run_at is None
    assert not schedule.paused and schedule.orchestrator == "sched.tick"
    env.advance(timedelta(minutes=5))
    runs = _runs(env, "every-minute")
    assert runs == [f"every-minute@2026-01-05T12:0{m}:00Z" for m in range(6)]
    state = env.get_orchestration_state(runs[-1])
    assert state.runtime_status is Status.COMPLETED
    assert state.output == {"at": "2026-01-05T12:05:00+00:00", "payload": "x"}
    schedule = env.get_schedule("every-minute")
    assert schedule.runs == 6 and schedule.missed == 0
    assert schedule.last_run_at == START + timedelta(minutes=5)
    assert schedule.next_run_at == START + timedelta(minutes=6)


def test_cron_in_a_named_zone(env: DurableTestEnv) -> None:
    env.create_schedule("paris", tick, cron="CRON_TZ=Europe/Paris 30 13 * * mon-fri")
    assert env.get_schedule("paris").next_run_at == START + timedelta(minutes=30)  # 13:30 CET
    env.advance(timedelta(days=7, hours=2))
    runs = _runs(env, "paris")
    assert [r.split("@")[1][:10] for r in runs] == [
        "2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12"]


def test_outage_catches_up_within_the_window_and_counts_the_rest(env: DurableTestEnv) -> None:
    env.create_schedule("allow", tick, interval=60, overlap="allow",
                        catchup_window=timedelta(minutes=5))
    env.create_schedule("latest", tick, interval=60)  # no window: the latest missed tick only
    env.create_schedule("one-at-a-time", slow, input=3600, interval=60, overlap="skip",
                        catchup_window=timedelta(minutes=5))
    env.run_until_idle()
    env.simulate_outage(timedelta(minutes=10, seconds=30))  # no worker ran 12:00-12:10:30
    # ticks 12:00 ... 12:10 fell during the outage: those since 12:05:30 run, once each
    assert _runs(env, "allow") == [f"allow@2026-01-05T12:{m:02d}:00Z" for m in range(6, 11)]
    assert env.get_schedule("allow").missed == 6
    assert _runs(env, "latest") == ["latest@2026-01-05T12:10:00Z"]
    assert env.get_schedule("latest").missed == 10
    # overlap "skip": the first caught-up tick runs (an hour), the four others are skipped
    assert _runs(env, "one-at-a-time") == ["one-at-a-time@2026-01-05T12:06:00Z"]
    skipped = env.get_schedule("one-at-a-time")
    assert (skipped.missed, skipped.overlapped, skipped.runs) == (6, 4, 1)
    env.advance(timedelta(seconds=30))
    assert len(_runs(env, "allow")) == 6  # and it goes on at 12:11


def test_overlap_buffer_one_starts_the_kept_tick_when_the_run_ends(env: DurableTestEnv) -> None:
    env.create_schedule("buffered", slow, input=150, interval=60, overlap="buffer_one")
    env.advance(timedelta(minutes=3))  # 12:00 runs until 12:02:30; 12:01 kept, 12:02 skipped
    schedule = env.get_schedule("buffered")
    # the sweep after the run ended (12:03) starts the kept tick, and keeps 12:03 in its place
    assert _runs(env, "buffered") == ["buffered@2026-01-05T12:00:00Z",
                                      "buffered@2026-01-05T12:01:00Z"]
    assert schedule.overlapped == 1 and schedule.buffered_at == START + timedelta(minutes=3)
    kept = env.get_orchestration_history("buffered@2026-01-05T12:01:00Z")[0]
    assert kept.timestamp == START + timedelta(minutes=3)


def test_pause_resume_trigger_delete(env: DurableTestEnv) -> None:
    env.create_schedule("managed", tick, interval=60)
    env.advance(timedelta(minutes=1))
    assert len(_runs(env, "managed")) == 2
    assert env.pause_schedule("managed").paused
    env.advance(timedelta(minutes=5))
    assert len(_runs(env, "managed")) == 2  # nothing while paused
    triggered = env.trigger_schedule("managed")  # even while paused
    assert triggered == "managed@2026-01-05T12:06:00Z-trigger"
    assert env.get_orchestration_state(triggered).runtime_status is Status.COMPLETED
    resumed = env.resume_schedule("managed")
    assert not resumed.paused and resumed.next_run_at == START + timedelta(minutes=6)
    env.advance(timedelta(minutes=1))
    assert _runs(env, "managed")[-1] == "managed@2026-01-05T12:07:00Z"
    assert env.get_schedule("managed").missed == 0  # paused ticks are not "missed"
    env.delete_schedule("managed")
    assert env.get_schedule("managed") is None and env.list_schedules() == []
    env.advance(timedelta(minutes=3))
    assert len(_runs(env, "managed")) == 5  # the runs stay, no new one
    with pytest.raises(ScheduleNotFoundError, match="no schedule has id 'managed'"):
        env.pause_schedule("managed")


def test_create_is_idempotent_and_checks_its_arguments(env: DurableTestEnv) -> None:
    first = env.create_schedule("nightly", tick, cron="0 3 * * *")
    assert env.create_schedule("nightly", tick, cron="0 3 * * *") == first
    with pytest.raises(ScheduleAlreadyExistsError, match="delete it first"):
        env.create_schedule("nightly", tick, cron="0 4 * * *")
    with pytest.raises(InvalidScheduleError, match="exactly one of interval"):
        env.create_schedule("bad", tick)
    with pytest.raises(InvalidScheduleError, match="at least one second"):
        env.create_schedule("bad", tick, interval=0.5)
    with pytest.raises(InvalidScheduleError, match="five fields"):
        env.create_schedule("bad", tick, cron="0 3 * *")
    with pytest.raises(InvalidScheduleError, match="outside 0-59"):
        env.create_schedule("bad", tick, cron="61 3 * * *")
    with pytest.raises(InvalidScheduleError, match="unknown time zone"):
        env.create_schedule("bad", tick, cron="CRON_TZ=Mars/Olympus 0 3 * * *")
    with pytest.raises(InvalidScheduleError, match="overlap must be one of"):
        env.create_schedule("bad", tick, interval=60, overlap="queue")
    with pytest.raises(InvalidScheduleError, match="would never run"):
        env.create_schedule("bad", tick, interval=60, end_at=START - timedelta(days=1))
    assert [s.schedule_id for s in env.list_schedules()] == ["nightly"]


def test_concurrency_limit_admits_in_fifo_order(env: DurableTestEnv) -> None:
    ids = [env.schedule_new_orchestration(limited, input=60, instance_id=f"lim-{i}")
           for i in range(6)]
    statuses = [env.get_orchestration_state(i).runtime_status for i in ids]
    assert statuses == [Status.RUNNING] * 2 + [Status.PENDING] * 4
    for iid in ids:
        env.wait_for_orchestration_completion(iid, timeout=10)
    starts = [env.get_orchestration_history(i)[0].timestamp for i in ids]
    assert starts == [START, START, START + timedelta(seconds=60), START + timedelta(seconds=60),
                      START + timedelta(seconds=120), START + timedelta(seconds=120)]


def test_concurrency_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency_limit must be a positive int"):
        orchestrator(concurrency_limit=0)


@orchestrator(name="sched.single", concurrency_limit=1)
def single(ctx, seconds):  # type: ignore[no-untyped-def]
    yield ctx.create_timer(timedelta(seconds=seconds))
    return ctx.instance_id


def test_waiting_instances_cost_nothing_and_the_sweeper_recovers_lost_wakeups() -> None:
    with DurableTestEnv() as env:  # the clock at the real time: the store stamps rows with it
        _lost_wakeups(env)


def _lost_wakeups(env: DurableTestEnv) -> None:
    from celery_durable.engine import history as h
    from celery_durable.store import NewInstance

    ids = [f"lost-{i}" for i in range(3)]
    for i, iid in enumerate(ids):  # created with their start, but no wake-up was ever sent
        at = env.now + timedelta(microseconds=i)
        env.store.create_instance(NewInstance(instance_id=iid, name="sched.single",
                                              created_at=at),
                                  [h.execution_started("sched.single", 60, at)])
    env.advance(timedelta(seconds=20))  # past the recovery grace: the sweeper wakes the head
    assert [env.get_orchestration_state(i).runtime_status for i in ids] == [
        Status.RUNNING, Status.PENDING, Status.PENDING]
    # later sweeps leave the waiting ones alone (their starts are older than the grace: any
    # other instance's would be woken), and no slot is free for the head of the queue
    report = sweep(env.durable, now=env.now + timedelta(seconds=30))
    assert (report.woken, report.fired) == (0, 0)
    for iid in ids:
        env.wait_for_orchestration_completion(iid, timeout=10)
    starts = [env.get_orchestration_history(i)[0].timestamp for i in ids]
    assert starts == sorted(starts) and starts[1] - starts[0] >= timedelta(seconds=60)
