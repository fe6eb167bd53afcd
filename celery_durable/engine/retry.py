"""RetryPolicy: how often and how long to wait before an activity or sub-orchestration is retried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff; waits between attempts are durable timers.

    The wait before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``first_retry_interval * backoff_coefficient ** (n - 1)``, capped at ``max_retry_interval``.
    No attempt is made after ``max_number_of_attempts`` attempts, nor when its timer would fire
    later than ``retry_timeout`` after the first attempt was scheduled.
    """

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: timedelta | None = None
    retry_timeout: timedelta | None = None

    def __init__(self, *, first_retry_interval: timedelta, max_number_of_attempts: int,
                 backoff_coefficient: float = 1.0, max_retry_interval: timedelta | None = None,
                 retry_timeout: timedelta | None = None) -> None:
        if not isinstance(first_retry_interval, timedelta) or first_retry_interval <= timedelta(0):
            raise ValueError("first_retry_interval must be a positive timedelta, "
                             f"got {first_retry_interval!r}")
        if isinstance(max_number_of_attempts, bool) or not isinstance(max_number_of_attempts, int) \
                or max_number_of_attempts < 1:
            raise ValueError("max_number_of_attempts must be an int >= 1, "
                             f"got {max_number_of_attempts!r}")
        if not backoff_coefficient >= 1.0:  # also refuses NaN
            raise ValueError(f"backoff_coefficient must be >= 1.0, got {backoff_coefficient!r}")
        if max_retry_interval is not None and max_retry_interval < first_retry_interval:
            raise ValueError("max_retry_interval must not be shorter than first_retry_interval")
        if retry_timeout is not None and retry_timeout <= timedelta(0):
            raise ValueError(f"retry_timeout must be a positive timedelta, got {retry_timeout!r}")
        object.__setattr__(self, "first_retry_interval", first_retry_interval)
        object.__setattr__(self, "max_number_of_attempts", max_number_of_attempts)
        object.__setattr__(self, "backoff_coefficient", float(backoff_coefficient))
        object.__setattr__(self, "max_retry_interval", max_retry_interval)
        object.__setattr__(self, "retry_timeout", retry_timeout)

    def delay_after(self, failed_attempts: int) -> timedelta:
        """The wait before the next attempt once ``failed_attempts`` attempts have failed."""
        try:
            seconds = self.first_retry_interval.total_seconds() * (
                self.backoff_coefficient ** (failed_attempts - 1))
            delay = timedelta(seconds=seconds)
        except OverflowError:  # longer than any timedelta: only the cap can answer
            if self.max_retry_interval is None:
                raise
            return self.max_retry_interval
        if self.max_retry_interval is not None and delay > self.max_retry_interval:
            delay = self.max_retry_interval
        return delay

    def next_fire_at(self, failed_attempts: int, now: datetime,
                     first_attempt_at: datetime) -> datetime | None:
        """When to retry after ``failed_attempts`` failures, or None when the policy gives up."""
        if failed_attempts >= self.max_number_of_attempts:
            return None
        try:
            fire_at = now + self.delay_after(failed_attempts)
        except OverflowError:  # a wait no datetime can hold: give up rather than crash
            return None
        if self.retry_timeout is not None and fire_at > first_attempt_at + self.retry_timeout:
            return None
        return fire_at
