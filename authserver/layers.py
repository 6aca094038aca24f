"""WSGI layers around the Flask app: the headers every response carries, and the request id.

Done here rather than in an `after_request` hook: the headers are a few tuples
appended to the list the server writes, where werkzeug's `Headers.add` validates
each value on every response (a measurable share of a hot request), and they hold
for every answer, including the fast lane's (`authserver.fastlane`).
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_KEY = "authserver.request_id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
NO_STORE = ("Cache-Control", "no-store")
# Answers that carry credentials, tokens or personal data are never cached.
NO_STORE_PREFIXES = ("/api/", "/login", "/oauth/", "/account", "/admin")


@dataclass(frozen=True)
class Origin:
    """Where a request answered outside Flask came from, for the audit log and log lines."""

    request_id: str
    ip: str
    user_agent: str
    method: str
    path: str


# Set by the fast lane while it answers; Flask's request context serves the rest.
CURRENT_ORIGIN: ContextVar[Origin | None] = ContextVar("authserver_origin", default=None)


def request_id(environ) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one; one per request."""
    known = environ.get(REQUEST_ID_KEY)
    if known is None:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        known = environ[REQUEST_ID_KEY] = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    return known


class ResponseHeaders:
    """Adds X-Request-ID, and each security header the view did not set itself, to every response."""

    def __init__(self, app, *, https: bool):
        self.app = app
        self.always = SECURITY_HEADERS + ((HSTS,) if https else ())
        self.private = self.always + (NO_STORE,)

    def __call__(self, environ, start_response):
        rid = request_id(environ)
        wanted = self.private if environ.get("PATH_INFO", "").startswith(NO_STORE_PREFIXES) else self.always

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers = [item for item in headers if item[0].lower() != "x-request-id"]
            headers.append(("X-Request-ID", rid))
            headers.extend(item for item in wanted if item[0].lower() not in present)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
