"""When ticks fall and what a sweep does with the due ones (celery_durable/schedule_spec.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery_durable.schedule_spec import ScheduleSpec, plan_fire, tick_instance_id

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


EVERY_10 = ScheduleSpec.make(10, None, None, None)


def test_interval_ticks_align_on_the_epoch_or_start_at() -> None:
    assert EVERY_10.first_at_or_after(s(3)) == s(10)
    assert EVERY_10.first_at_or_after(s(10)) == s(10)
    assert EVERY_10.next_after(s(10)) == s(20)
    shifted = ScheduleSpec.make(timedelta(seconds=10), None, s(3), s(33))
    assert shifted.first_at_or_after(T0) == s(3)
    assert shifted.next_after(s(23)) == s(33) and shifted.next_after(s(33)) is None
    assert shifted.count(s(3), None) == 4


def test_on_time_ticks_start_one_by_one() -> None:
    plan = plan_fire(EVERY_10, "skip", None, s(10), None, False, s(10.3))
    assert plan.starts == [s(10)] and plan.next_run_at == s(20) and plan.missed == 0


def test_catch_up_within_the_window_then_overlap_policy() -> None:
    allow = plan_fire(EVERY_10, "allow", timedelta(seconds=35), s(0), None, False, s(100))
    assert allow.starts == [s(70), s(80), s(90), s(100)] and allow.missed == 7
    skip = plan_fire(EVERY_10, "skip", timedelta(seconds=35), s(0), None, False, s(100))
    assert skip.starts == [s(70)] and (skip.missed, skip.overlapped) == (7, 3)
    buffered = plan_fire(EVERY_10, "buffer_one", timedelta(seconds=35), s(0), None, False, s(100))
    assert buffered.starts == [s(70)] and buffered.buffered_at == s(80)
    assert buffered.overlapped == 2


def test_without_a_window_late_ticks_run_and_an_outage_runs_the_latest() -> None:
    late = plan_fire(EVERY_10, "allow", None, s(0), None, False, s(25))  # a slow sweep
    assert late.starts == [s(0), s(10), s(20)] and late.missed == 0
    outage = plan_fire(EVERY_10, "allow", None, s(0), None, False, s(3600))
    assert outage.starts[0] >= s(3540) and outage.starts[-1] == s(3600)
    assert outage.missed + len(outage.starts) == 361


def test_previous_run_still_going() -> None:
    plan = plan_fire(EVERY_10, "skip", None, s(10), None, True, s(10))
    assert plan.starts == [] and plan.overlapped == 1 and plan.next_run_at == s(20)
    kept = plan_fire(EVERY_10, "buffer_one", None, s(10), None, True, s(10))
    assert kept.starts == [] and kept.buffered_at == s(10)
    ended = plan_fire(EVERY_10, "buffer_one", None, s(20), s(10), False, s(15))
    assert ended.starts == [s(10)] and ended.buffered_at is None


def test_instance_ids_name_the_tick() -> None:
    assert tick_instance_id("nightly", s(3)) == "nightly@2026-01-01T00:00:03Z"
    assert tick_instance_id("x", s(0.25)) == "x@2026-01-01T00:00:00.250000Z"
