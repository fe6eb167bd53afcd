"""OrchestrationStatus: the runtime status of an orchestration instance."""

from __future__ import annotations

import enum


class OrchestrationStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    SUSPENDED = "SUSPENDED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset(
    {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
)
