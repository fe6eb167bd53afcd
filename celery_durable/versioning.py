"""Orchestration versioning: which instance versions a worker may run, and what it does otherwise.

A worker with ``VersioningOptions(version=...)`` checks the version of every instance before it
runs one of its episodes. An instance it does not accept either fails with
`VersionMismatchError` (``VersionFailureStrategy.FAIL``) or waits, with nothing lost, for a worker
that accepts it (``REJECT``): its wake-up goes to the version's own queue (`version_queue`), which
every worker of that version consumes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class VersionMatchStrategy(str, enum.Enum):
    NONE = "NONE"                          #: run every version
    STRICT = "STRICT"                      #: run only the worker's own version
    CURRENT_OR_OLDER = "CURRENT_OR_OLDER"  #: run versions up to the worker's own


class VersionFailureStrategy(str, enum.Enum):
    FAIL = "FAIL"      #: fail the instance with a version error
    REJECT = "REJECT"  #: leave the episode for a worker whose version matches


@dataclass(frozen=True)
class VersioningOptions:
    """A worker's versioning: its ``version``, the ``default_version`` it schedules new work with,
    and how it treats instances of other versions."""

    version: str | None = None
    default_version: str | None = None
    match_strategy: VersionMatchStrategy = VersionMatchStrategy.NONE
    failure_strategy: VersionFailureStrategy = VersionFailureStrategy.FAIL

    def __post_init__(self) -> None:
        for name in ("version", "default_version"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"VersioningOptions.{name} must be a non-empty string or None, "
                                 f"got {value!r}")
        # accept the enums' names as plain strings too ("STRICT", "REJECT")
        object.__setattr__(self, "match_strategy", VersionMatchStrategy(self.match_strategy))
        object.__setattr__(self, "failure_strategy",
                           VersionFailureStrategy(self.failure_strategy))
        if self.match_strategy is not VersionMatchStrategy.NONE and self.version is None:
            raise ValueError(f"match_strategy {self.match_strategy.value} compares instance "
                             "versions with the worker's own: set VersioningOptions(version=...)")

    def accepts(self, instance_version: str | None) -> bool:
        """Whether this worker may run an instance scheduled with ``instance_version``."""
        if self.match_strategy is VersionMatchStrategy.NONE or self.version is None:
            return True
        if self.match_strategy is VersionMatchStrategy.STRICT:
            return compare_versions(instance_version, self.version) == 0
        return compare_versions(instance_version, self.version) <= 0

    @property
    def rejects_some(self) -> bool:
        """Whether this worker leaves some versions to other workers."""
        return self.failure_strategy is VersionFailureStrategy.REJECT and \
            self.match_strategy is not VersionMatchStrategy.NONE

    def rejects(self, instance_version: str | None) -> bool:
        """Whether this worker leaves instances of ``instance_version`` to another worker."""
        return self.failure_strategy is VersionFailureStrategy.REJECT and \
            not self.accepts(instance_version)


_DOTTED = re.compile(r"^\d+(\.\d+)*$")


def _numbers(version: str) -> list[int] | None:
    return [int(p) for p in version.split(".")] if _DOTTED.match(version) else None


def compare_versions(a: str | None, b: str | None) -> int:
    """Compare two versions: dotted numbers numerically (``"1.10" > "1.9"``, ``"1.0" == "1"``),
    else as strings.

    ``None`` (unversioned) sorts before every version. Returns -1, 0 or 1.
    """
    if a == b:
        return 0
    if a is None:
        return -1
    if b is None:
        return 1
    pa, pb = _numbers(a), _numbers(b)
    if pa is not None and pb is not None:
        width = max(len(pa), len(pb))
        pa += [0] * (width - len(pa))
        pb += [0] * (width - len(pb))
        return (pa > pb) - (pa < pb)
    return (a > b) - (a < b)


def version_key(version: str) -> str:
    """The canonical spelling of a version: versions that compare equal get the same key
    (``"1.0.0"`` and ``"01"`` give ``"1"``); other strings are kept as they are."""
    numbers = _numbers(version)
    if numbers is None:
        return version
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return ".".join(str(n) for n in numbers)


def version_queue(episode_queue: str, version: str) -> str:
    """The queue that carries the episodes of instances of ``version`` that another worker
    rejected: ``"celery"`` and ``"1.2.0"`` give ``"celery.v1.2"``."""
    return f"{episode_queue}.v{version_key(version)}"


class Version(str):
    """An instance's version as ``ctx.version`` gives it: a ``str`` whose ordering compares
    dotted numbers numerically (``Version("1.10") > "1.9"``) and puts ``None`` first; equality
    and hashing stay those of ``str``."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        if other is not None and not isinstance(other, str):
            return NotImplemented
        return compare_versions(self, other) < 0

    def __le__(self, other: object) -> bool:
        if other is not None and not isinstance(other, str):
            return NotImplemented
        return compare_versions(self, other) <= 0

    def __gt__(self, other: object) -> bool:
        if other is not None and not isinstance(other, str):
            return NotImplemented
        return compare_versions(self, other) > 0

    def __ge__(self, other: object) -> bool:
        if other is not None and not isinstance(other, str):
            return NotImplemented
        return compare_versions(self, other) >= 0
