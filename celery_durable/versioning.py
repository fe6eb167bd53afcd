"""Orchestration versioning: which instance versions a worker may run, and what it does otherwise."""

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

    def accepts(self, instance_version: str | None) -> bool:
        """Whether this worker may run an instance scheduled with ``instance_version``."""
        if self.match_strategy is VersionMatchStrategy.NONE or self.version is None:
            return True
        if self.match_strategy is VersionMatchStrategy.STRICT:
            return compare_versions(instance_version, self.version) == 0
        return compare_versions(instance_version, self.version) <= 0


_DOTTED = re.compile(r"^\d+(\.\d+)*$")


def compare_versions(a: str | None, b: str | None) -> int:
    """Compare two versions: dotted numbers numerically (``"1.10" > "1.9"``), else as strings.

    ``None`` (unversioned) sorts before every version. Returns -1, 0 or 1.
    """
    if a == b:
        return 0
    if a is None:
        return -1
    if b is None:
        return 1
    if _DOTTED.match(a) and _DOTTED.match(b):
        pa, pb = [int(p) for p in a.split(".")], [int(p) for p in b.split(".")]
        width = max(len(pa), len(pb))
        pa += [0] * (width - len(pa))
        pb += [0] * (width - len(pb))
        return (pa > pb) - (pa < pb)
    return (a > b) - (a < b)
