"""Small helpers shared by the HTML and JSON views."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.routing import IntegerConverter


def services():
    """The wired-up services of the running app (see services.build_services)."""
    return current_app.extensions["authserver"]


def client_ip() -> str:
    return request.remote_addr or ""


def safe_next(target: str | None, default: str = "/account") -> str:
    """Only this server's own paths: no scheme, no host, no `//` or backslash tricks."""
    if not target or len(target) > 2000:
        return default
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


class DatabaseInt(IntegerConverter):
    """`<int:...>` URL parts that fit a 64-bit column; a longer number is simply not found (404)."""

    def __init__(self, url_map, fixed_digits: int = 0, min: int | None = None, max: int | None = None, signed: bool = False):
        super().__init__(url_map, fixed_digits, min, 2**63 - 1 if max is None else max, signed)
