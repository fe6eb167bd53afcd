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
        try:
            message = str(exc)
        except Exception as error:  # noqa: BLE001 - user code: a broken __str__ must not hide exc
            message = f"<str() of the {type(exc).__name__} raised {type(error).__name__}>"
        return cls(message=message, error_type=type(exc).__name__, stack_trace=stack)

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
