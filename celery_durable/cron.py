"""Cron expressions in the usual five-field form, in UTC or a named time zone.

``CronExpression("*/15 9-17 * * mon-fri")``; ``CronExpression("CRON_TZ=Europe/Paris 0 3 * * *")``
(the zone prefix of cronie, robfig/cron and Temporal; ``TZ=`` works too). Fields: minute 0-59,
hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-7 or sun-sat (0 and 7 are
Sunday); each a ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma
list of these. ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
and ``@hourly`` stand for their usual expressions. When both day fields are restricted, a day
matching either runs (Vixie cron's rule).

A parser of our own rather than croniter: five fields are ~150 lines, pure and deterministic
(no clock: `next_after` takes the time), with no dependency to pin; croniter adds seconds, years,
``L``/``W``/``#`` and hashing that a schedule stored here would have to reject anyway, and its
maintenance changed hands in 2024. Zones come from the standard library's ``zoneinfo`` (the
system's tz database, or the ``tzdata`` package where the system has none).

Daylight saving time: a local time that does not exist (the hour skipped in spring) does not run
that day; a local time that happens twice (the hour repeated in autumn) runs once, at its first
occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery_durable.errors import InvalidScheduleError

_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
#: (name, lowest, highest, names) of the five fields
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
#: how far ahead `next_after` looks (a 29 February on a Monday recurs within 28 years)
_SEARCH_DAYS = 366 * 29


def _bad(expression: str, why: str) -> InvalidScheduleError:
    return InvalidScheduleError(
        f"cron expression {expression!r}: {why}; expected five fields \"minute hour "
        "day-of-month month day-of-week\" (e.g. \"*/15 9-17 * * mon-fri\"), optionally after "
        "\"CRON_TZ=<zone> \", or a macro such as @daily")


def _value(text: str, names: dict[str, int], expression: str, field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise _bad(expression, f"{field} field has {text!r}, not a number"
                   + (f" or a name ({', '.join(names)})" if names else ""))
    return int(text)


def _field(text: str, spec: tuple[str, int, int, dict[str, int]],
           expression: str) -> frozenset[int]:
    field, low, high, names = spec
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(expression, f"{field} field has step {step_text!r}, not a positive "
                           "number")
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = (_value(a, names, expression, field),
                           _value(b, names, expression, field))
        else:
            first = _value(span, names, expression, field)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise _bad(expression, f"{field} field has {part!r}, outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression (see the module's docstring); `next_after` gives its times."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    zone: str = "UTC"

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        if not isinstance(expression, str) or not expression.strip():
            raise _bad(str(expression), "it is empty")
        text, zone = expression.strip(), "UTC"
        head, _, rest = text.partition(" ")
        if head.upper().startswith(("CRON_TZ=", "TZ=")):
            zone, text = head.partition("=")[2], rest.strip()
            check_zone(zone)
        text = _MACROS.get(text.lower(), text)
        parts = text.split()
        if len(parts) != 5:
            raise _bad(expression, f"it has {len(parts)} field(s)")
        minutes, hours, days, months, weekdays = (
            _field(part, spec, expression) for part, spec in zip(parts, _FIELDS, strict=True))
        weekdays = frozenset(d % 7 for d in weekdays)
        return cls(expression, minutes, hours, days, months, weekdays,
                   days_restricted=not parts[2].startswith("*"),
                   weekdays_restricted=not parts[4].startswith("*"), zone=zone)

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after`` (aware) that the expression names, in UTC;
        None if there is none in the next 29 years (e.g. "0 0 31 2 *")."""
        zone = ZoneInfo(self.zone)
        after = after.astimezone(timezone.utc)
        local = after.astimezone(zone)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = local.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        wall = datetime.combine(day, time(hour, minute), tzinfo=zone)
                        at = wall.astimezone(timezone.utc)
                        if at <= after:
                            continue
                        if at.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
                            continue  # skipped by a daylight saving change
                        return at
            day += timedelta(days=1)
        return None


def check_zone(zone: str) -> ZoneInfo:
    """The named time zone, or `InvalidScheduleError` saying what to do."""
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidScheduleError(
            f"unknown time zone {zone!r}: give an IANA name such as \"Europe/Paris\" or \"UTC\" "
            "(on systems without a tz database, pip install tzdata)") from exc
