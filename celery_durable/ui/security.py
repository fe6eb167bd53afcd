"""What the dashboard checks before it reads a request, and the headers every answer carries.

* **Host** (DNS rebinding): a request whose ``Host`` is not a name the dashboard is bound to or
  configured for (``--allowed-hosts``) is refused, so a page on ``evil.example`` that resolves
  its own name to 127.0.0.1 cannot reach the dashboard through the victim's browser.
* **Origin** (cross-site requests): a state-changing request (POST) that a browser marks as
  coming from another site (``Origin`` not the dashboard's own, or ``Sec-Fetch-Site:
  cross-site``) is refused. Requests without those headers (curl, scripts) are not from a page.
* **Bodies**: every handler streams its body, so authentication and the ``Content-Length`` are
  checked before a byte of the body is read; the server refuses bodies over `body_limit`.
* **Headers**: a strict Content-Security-Policy (the pages have no inline script or style),
  ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no clickjacking of the confirm
  dialogs), ``nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

#: the policy of every answer: scripts, styles and API calls from the dashboard only
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: what a request body may hold beyond ``durable_max_payload_bytes`` (the JSON around a payload)
BODY_OVERHEAD = 64 * 1024
#: addresses that only this machine reaches
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1"})
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: methods that change nothing (the Origin check is for the others)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def body_limit(max_payload_bytes: int) -> int:
    """The largest request body the dashboard reads: a payload at the store's limit and room
    for the JSON around it."""
    return max_payload_bytes + BODY_OVERHEAD


def is_loopback(address: str) -> bool:
    """Whether listening on ``address`` exposes the dashboard to this machine only."""
    if address in LOOPBACK_ADDRESSES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(address: str) -> bool:
    """Whether ``address`` means every interface (``0.0.0.0``, ``::`` or empty)."""
    try:
        return address in ("", "*") or ipaddress.ip_address(address.strip("[]")).is_unspecified
    except ValueError:
        return False


def _hostname(netloc: str) -> str | None:
    """The host part of ``host[:port]`` / ``[v6]:port``, lowercased; None if malformed."""
    netloc = netloc.strip().lower()
    if not netloc or any(c in netloc for c in "/@?#\\ \t"):
        return None
    try:
        parsed = urllib.parse.urlsplit("//" + netloc)
        parsed.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return None
    return parsed.hostname.rstrip(".") if parsed.hostname else None


def parse_allowed_hosts(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``--allowed-hosts``: host names (``dash.example.com``), ``.example.com`` for every
    subdomain, IP addresses, or ``*`` (any), comma- or space-separated."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value or ())
    hosts: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item == "*":
            hosts.append(item)
            continue
        try:
            hosts.append(str(ipaddress.ip_address(item.strip("[]"))))
            continue
        except ValueError:
            pass
        bare = item[1:] if item.startswith(".") else item
        if not re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*",
                            bare):
            raise ValueError(f"--allowed-hosts takes host names such as dash.example.com, "
                             f".example.com or 10.0.0.5 (no scheme, path or port), got {item!r}")
        hosts.append(item)
    return tuple(hosts)


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` names the dashboard answers to (``allowed``: host names, ``.suffix``
    patterns, ``*``) and which other sites' pages may act on it (``origins``: the names given
    with ``--allowed-hosts``, e.g. the public name behind a proxy)."""

    allowed: tuple[str, ...]
    origins: tuple[str, ...] = ()

    @classmethod
    def for_address(cls, address: str, extra: Iterable[str] = ()) -> HostPolicy:
        """The hosts of a dashboard listening on ``address``: the loopback names, the address
        itself, and ``extra`` (``--allowed-hosts``). On every interface (``0.0.0.0``, ``::``)
        without ``extra``: any host (authentication is then required, see the command)."""
        extra = tuple(extra)
        named = tuple(h for h in extra if h != "*")
        if is_wildcard(address) and not extra:
            return cls(("*",))
        own = () if is_wildcard(address) else (address.strip("[]").lower(),)
        return cls(tuple(dict.fromkeys((*_LOOPBACK_NAMES, *own, *extra))), named)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header is for the dashboard."""
        return _matches(_hostname(host_header or ""), self.allowed)

    def origin_problem(self, method: str, host_header: str | None, origin: str | None,
                       fetch_site: str | None) -> str | None:
        """Why a request must be refused as cross-site, or None. Only state-changing methods
        are checked; the ``Origin`` must be the dashboard's own (the host and port the browser
        asked for, or one of the names given with ``--allowed-hosts``)."""
        if method.upper() in SAFE_METHODS:
            return None
        if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
            return "the browser marked this request as sent from another site"
        if origin is None:
            return None  # not sent by a page (curl, a script): nothing to forge
        parsed = urllib.parse.urlsplit(origin.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            return f"the request comes from the opaque origin {origin!r}"
        if host_header and parsed.netloc.lower() == host_header.strip().lower():
            return None  # the page's own host and port
        if _matches(_hostname(parsed.netloc), self.origins):
            return None
        return f"the request comes from another site ({origin!r})"


def _matches(name: str | None, patterns: Iterable[str]) -> bool:
    if name is None:
        return False
    return any(p == "*" or name == p or (p.startswith(".") and (name == p[1:] or
                                                                 name.endswith(p)))
               for p in patterns)
