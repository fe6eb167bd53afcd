"""Stored text made safe to print on an operator's terminal.

An input, event name or failure message may carry escape sequences (``\\x1b]0;...\\x07`` sets the
terminal's title, others move the cursor, rewrite lines or, on some terminals, write files).
The CLI's human-readable output shows them as ``\\x1b``-style escapes instead of sending them;
its JSON output is already safe (JSON escapes control characters).
"""

from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and the bidirectional overrides and isolates that make
#: text display in another order than it is stored ("Trojan Source")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``,
    ``\\u202e``), so that printing it shows it rather than obeys it."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
