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
    def parse(cls, value: str, source: str = "--basic-auth") -> BasicAuth:
        """``user:password`` (the password may contain ``:``). ``ValueError`` naming ``source``
        (where the value came from) for an empty or malformed value; the message describes the
        value without repeating it, since it may hold a password."""
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            shape = ("empty" if not value.strip() else "without a ':'" if not sep else
                     "with an empty user" if not user else "with an empty password")
            raise ValueError(f"{source} must be USER:PASSWORD with both parts non-empty, "
                             f"got a value {shape} ({len(value)} characters)")
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
