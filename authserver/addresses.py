"""The client's address: the TCP peer, or what trusted reverse proxies say it is.

Behind a reverse proxy every connection comes from the proxy. Only when the peer is in
AUTHSERVER_TRUSTED_PROXIES (empty by default) are `Forwarded` (RFC 7239), else
`X-Forwarded-For`, else `X-Real-IP` read: right to left, skipping the hops that are
trusted proxies themselves; the first hop that is not is the client (RFC 9700 §4.13).
Anyone else's headers are ignored, so a client cannot choose its own address.

`ClientAddress` is the WSGI layer that does it once per request, outermost: it puts the
client's address in REMOTE_ADDR, where every user of an address reads it (throttles,
key address ranges, the audit log, sessions, last-used addresses, forward-auth), and
keeps the TCP peer under PEER_KEY for the one question that is about the proxy itself
(may it tell forward-auth the original URL?).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from .access_rules import IPNetwork, address_in

PEER_KEY = "authserver.peer"
# `for=` in a Forwarded element: a token or a quoted string.
_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)
MAX_HOPS = 32


def _address(text: str) -> str | None:
    """The IP address of one hop (`192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `2001:db8::1`), or None."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _forwarded_hops(value: str) -> list[str | None] | None:
    hops: list[str | None] = []
    for element in value.split(","):
        found = _FORWARDED_FOR.search(element)
        hops.append(_address(found.group(1)) if found else None)
    return hops


def forwarded_chain(environ) -> list[str | None] | None:
    """The hops the proxies reported, client first; an entry is None where a hop was not an address."""
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        return _forwarded_hops(forwarded)
    xff = environ.get("HTTP_X_FORWARDED_FOR")
    if xff:
        return [_address(part) for part in xff.split(",")]
    real = environ.get("HTTP_X_REAL_IP")
    if real:
        return [_address(real)]
    return None


def client_address(environ, trusted: Sequence[IPNetwork]) -> str:
    """The client's address for this request (see the module's docstring)."""
    peer = environ.get("REMOTE_ADDR") or ""
    if not trusted or not address_in(peer, trusted):
        return peer
    chain = forwarded_chain(environ)
    if not chain:
        return peer
    nearest = peer  # the closest hop known to be genuine so far
    for hop in reversed(chain[-MAX_HOPS:]):
        if hop is None:
            # A trusted proxy passed on something that is not an address: it is the best we know.
            return nearest
        if not address_in(hop, trusted):
            return hop
        nearest = hop
    return nearest


class ClientAddress:
    """WSGI layer: REMOTE_ADDR becomes the client's address; the TCP peer is kept under PEER_KEY."""

    def __init__(self, app, trusted: Sequence[IPNetwork]):
        self.app = app
        self.trusted = tuple(trusted)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR") or ""
        environ[PEER_KEY] = peer
        if self.trusted:
            environ["REMOTE_ADDR"] = client_address(environ, self.trusted)
        return self.app(environ, start_response)


def peer_address(environ) -> str:
    """The TCP peer of the request (the proxy, when there is one)."""
    return environ.get(PEER_KEY, environ.get("REMOTE_ADDR") or "")
