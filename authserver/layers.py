"""The one WSGI layer every response passes through: request id, security headers, metrics, access line.

It sits inside `addresses.ClientAddress` (so REMOTE_ADDR is already the client's) and
outside both the dispatch of the hot endpoints (`authserver.dispatch`) and Flask, so
each concern lives here once, whoever answered. What it knows of the request
(`RequestInfo`: id, address, user agent, method, path) is in a context variable for
the log formatter and the audit log while the request runs.

The headers are a few tuples appended to the list the server writes, where werkzeug's
`Headers.add` would validate each value on every response (a measurable share of a
hot request).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from .metrics import record_request

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
NO_STORE_PREFIXES = ("/api/", "/login", "/oauth/", "/account", "/admin", "/password/", "/email/", "/invite")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request being answered, for log lines and audit rows."""

    request_id: str
    ip: str
    user_agent: str
    method: str
    path: str


CURRENT_REQUEST: ContextVar[RequestInfo | None] = ContextVar("authserver_request", default=None)


def current_request() -> RequestInfo | None:
    return CURRENT_REQUEST.get()


def request_id() -> str:
    """The id of the request being answered ("-" outside one)."""
    info = CURRENT_REQUEST.get()
    return info.request_id if info is not None else "-"


class EndpointNames:
    """The metrics label of a request: its URL rule (`/admin/users/<int:user_id>`), never the raw path."""

    def __init__(self, url_map: Map):
        self.url_map = url_map
        self.fixed = frozenset(rule.rule for rule in url_map.iter_rules() if not rule.arguments)

    def __call__(self, environ) -> str:
        path = environ.get("PATH_INFO") or "/"
        if path in self.fixed:
            return path
        try:
            rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:
            return "unmatched"
        return rule.rule


def utf8_text(value: str) -> str:
    """A PEP 3333 string (latin-1 text carrying bytes: a path, a header value) as the text whose
    UTF-8 is those bytes. For the log, the path the client wrote; for answers, Granian writes
    header strings as UTF-8, not latin-1 as PEP 3333 says, and would otherwise send the UTF-8
    of a name (`Remote-User: jöe`) encoded twice."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):  # not bytes this app meant as UTF-8: as given
        return value


MAX_LOGGED_PATH = 2048
MAX_LOGGED_METHOD = 32


def secret_paths(url_map: Map) -> tuple[str, ...]:
    """The paths whose rest is a credential: rules with a `<token>` argument (a mailed link's),
    by what comes before it (`/password/reset/`)."""
    return tuple(sorted({rule.rule.split("<", 1)[0] for rule in url_map.iter_rules() if "token" in rule.arguments}))


def logged_path(path: str, secrets_after: tuple[str, ...]) -> str:
    """The request's path as log lines and audit rows name it: a credential in it replaced by
    `<token>`, as the client wrote it (UTF-8, where WSGI gives each byte as a character), at
    most MAX_LOGGED_PATH characters."""
    if path.startswith(secrets_after):
        return next(prefix for prefix in secrets_after if path.startswith(prefix)) + "<token>"
    if not path.isascii():
        path = utf8_text(path)
    return path[:MAX_LOGGED_PATH]


class Edge:
    """Every response gets X-Request-ID and each security header its answer did not set itself;
    a 302 after a write becomes a 303 (RFC 9700 §4.11: the browser must not repost the form, and
    its credentials, to where it is sent); every request is counted and gets one access line.
    Under Granian, non-ASCII header values are handed over so that their bytes go out unchanged."""

    def __init__(self, app, *, https: bool, endpoint: Callable[[dict], str],
                 access_line: Callable[[int, float], None], secret_paths: tuple[str, ...] = ()):
        self.app = app
        self.endpoint = endpoint
        self.access_line = access_line
        self.secret_paths = secret_paths
        self.always = SECURITY_HEADERS + ((HSTS,) if https else ())
        self.private = self.always + (NO_STORE,)

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        info = RequestInfo(
            incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8),
            environ.get("REMOTE_ADDR") or "",
            environ.get("HTTP_USER_AGENT", ""),
            method[:MAX_LOGGED_METHOD],
            logged_path(path, self.secret_paths),
        )
        wanted = self.private if path.startswith(NO_STORE_PREFIXES) else self.always
        granian = environ.get("SERVER_SOFTWARE", "").startswith("Granian")
        answered: list[str] = []

        def start(status, headers, exc_info=None):
            if status[:3] == "302" and method in WRITES:
                status = "303 See Other"
            present = {name.lower() for name, _ in headers}
            if granian:
                headers = [(name, value if value.isascii() else utf8_text(value)) for name, value in headers]
            headers = [item for item in headers if item[0].lower() != "x-request-id"]
            headers.append(("X-Request-ID", info.request_id))
            headers.extend(item for item in wanted if item[0].lower() not in present)
            answered.append(status)
            return start_response(status, headers, exc_info)

        token = CURRENT_REQUEST.set(info)
        try:
            return self.app(environ, start)
        finally:
            status = int(answered[-1][:3]) if answered else 500
            elapsed = time.perf_counter() - started
            record_request(self.endpoint(environ), method, status, elapsed)
            self.access_line(status, elapsed)
            CURRENT_REQUEST.reset(token)
