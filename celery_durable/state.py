"""What clients read about an instance: OrchestrationState and Page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from celery_durable.engine.failure import FailureDetails
from celery_durable.engine.status import OrchestrationStatus
from celery_durable.errors import OrchestrationFailedError

T = TypeVar("T")


@dataclass(frozen=True)
class OrchestrationState:
    """A snapshot of one orchestration instance."""

    instance_id: str
    name: str
    version: str | None
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    input: Any = None
    output: Any = None
    custom_status: Any = None
    failure_details: FailureDetails | None = None
    parent_instance_id: str | None = None
    tags: dict[str, str] | None = None
    completed_at: datetime | None = None

    def raise_if_failed(self) -> None:
        """Raise OrchestrationFailedError if the instance failed."""
        if self.runtime_status is OrchestrationStatus.FAILED:
            details = self.failure_details
            raise OrchestrationFailedError(
                f"orchestration {self.instance_id!r} ({self.name}) failed: "
                f"{details if details else 'no failure details'}", details)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a query; pass ``continuation_token`` back for the next (None on the last)."""

    items: list[T] = field(default_factory=list)
    continuation_token: str | None = None
