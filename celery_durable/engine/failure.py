"""FailureDetails: how a failed activity, sub-orchestration or orchestration is described."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FailureDetails:
    """What went wrong: the exception's message, its type name and the formatted stack trace."""

    message: str
    error_type: str
    stack_trace: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> FailureDetails:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(message=str(exc), error_type=type(exc).__name__, stack_trace=stack)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "error_type": self.error_type,
                "stack_trace": self.stack_trace}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailureDetails:
        return cls(message=str(data.get("message", "")),
                   error_type=str(data.get("error_type", "Exception")),
                   stack_trace=data.get("stack_trace"))

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"
