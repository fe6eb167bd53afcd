"""HTTP basic authentication for the dashboard (``--basic-auth user:pass``), as Flower has it."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class BasicAuth:
    """The one user and password the dashboard accepts."""

    user: str
    password: str

    @classmethod
    def parse(cls, value: str) -> BasicAuth:
        """``user:password`` (the password may contain ``:``)."""
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise ValueError("--basic-auth must be USER:PASSWORD with both parts non-empty, "
                             f"got {value!r}")
        return cls(user, password)

    def accepts(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries these credentials (constant time)."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok
