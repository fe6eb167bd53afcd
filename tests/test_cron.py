"""The five-field cron parser (celery_durable/cron.py): fields, names, steps, macros, the day
rule, time zones and daylight saving changes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from celery_durable.cron import CronExpression
from celery_durable.errors import InvalidScheduleError

UTC = timezone.utc


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def times(expression: str, start: datetime, n: int) -> list[datetime]:
    cron, out, at = CronExpression.parse(expression), [], start
    for _ in range(n):
        at = cron.next_after(at)
        assert at is not None
        out.append(at)
    return out


def test_steps_ranges_and_names() -> None:
    assert times("*/20 9-10 * * mon-fri", t(2026, 1, 9, 10, 30), 3) == [  # a Friday
        t(2026, 1, 9, 10, 40), t(2026, 1, 12, 9, 0), t(2026, 1, 12, 9, 20)]
    assert times("0 0 1 jan,jul *", t(2026, 2, 1), 2) == [t(2026, 7, 1), t(2027, 1, 1)]
    assert times("5/30 * * * *", t(2026, 1, 1), 2) == [t(2026, 1, 1, 0, 5), t(2026, 1, 1, 0, 35)]
    assert times("0 12 * * 7", t(2026, 1, 5), 1) == [t(2026, 1, 11, 12)]  # 7 is Sunday


def test_strictly_after_and_macros() -> None:
    assert times("@hourly", t(2026, 1, 1, 3), 1) == [t(2026, 1, 1, 4)]
    assert times("@daily", t(2026, 1, 1, 0, 0, 0), 1) == [t(2026, 1, 2)]
    assert times("@weekly", t(2026, 1, 5), 1) == [t(2026, 1, 11)]


def test_either_day_field_matches_when_both_are_restricted() -> None:
    # the 13th, or any Friday (Vixie cron)
    assert times("0 0 13 * fri", t(2026, 2, 1), 3) == [t(2026, 2, 6), t(2026, 2, 13),
                                                       t(2026, 2, 20)]


def test_named_zone_and_daylight_saving() -> None:
    paris = "CRON_TZ=Europe/Paris 30 2 * * *"
    # 29 March 2026: 02:30 does not exist in Paris (clocks jump 02:00 -> 03:00): no run
    assert times(paris, t(2026, 3, 27, 12), 3) == [t(2026, 3, 28, 1, 30), t(2026, 3, 30, 0, 30),
                                                   t(2026, 3, 31, 0, 30)]
    # 25 October 2026: 02:30 happens twice: one run, at the first
    assert times(paris, t(2026, 10, 24, 12), 2) == [t(2026, 10, 25, 0, 30),
                                                    t(2026, 10, 26, 1, 30)]
    assert times("TZ=America/New_York 0 9 * * *", t(2026, 1, 1), 1) == [t(2026, 1, 1, 14)]


def test_a_date_that_never_comes() -> None:
    assert CronExpression.parse("0 0 31 2 *").next_after(t(2026, 1, 1)) is None
    assert times("0 0 29 2 *", t(2026, 1, 1), 1) == [t(2028, 2, 29)]


@pytest.mark.parametrize(("expression", "fragment"), [
    ("", "it is empty"), ("* * * *", "4 field(s)"), ("60 * * * *", "outside 0-59"),
    ("* * * foo *", "not a number or a name"), ("*/0 * * * *", "not a positive number"),
    ("5-1 * * * *", "outside 0-59"), ("CRON_TZ=Nowhere/Land * * * * *", "unknown time zone"),
])
def test_bad_expressions_say_what_is_expected(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidScheduleError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        CronExpression.parse(expression)
