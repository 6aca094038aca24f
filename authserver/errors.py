"""One place that turns a failure into an answer.

A failure the caller can act on is a `DomainError` (or a subclass): it carries its
status, error code, description (cause and fix) and, for forms, the field it is
about. `failure_for` is the one registry: it maps every exception, ours or a
library's (werkzeug's HTTP errors, a database outage, the rate-limit store), to an
`ApiError`. `json_answer` renders it without Flask, for the hot endpoints answered
before Flask (authserver/dispatch.py); `init_app` renders it in Flask: JSON under
`/api/`, on OAuth endpoints and for clients that ask for JSON, an HTML page for
browsers elsewhere. An unexpected exception is logged with the request id and
answered with a bare description; a database outage is a 503.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, NamedTuple

from flask import Response, redirect, render_template, request, url_for
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .crypto import SealError
from .extensions import db
from .layers import request_id

log = logging.getLogger("authserver.errors")

# Paths whose callers are programs: they always get JSON.
JSON_PREFIXES = ("/api/", "/oauth/", "/.well-known/", "/userinfo", "/jwks")
# ...except the OAuth pages a person's browser is sent to: they answer in HTML.
BROWSER_PATHS = ("/oauth/authorize", "/oauth/consent", "/oauth/logout")
JSON_TYPE = ("Content-Type", "application/json")


def is_json_path(path: str) -> bool:
    return path.startswith(JSON_PREFIXES) and not path.startswith(BROWSER_PATHS)


class DomainError(Exception):
    """A failure with a status, an error code, a description naming cause and fix, and the
    form field it concerns (None: the form as a whole). Subclasses set `status` and `error`
    as class defaults; each instance may override them."""

    status = 400
    error = "invalid_request"

    def __init__(self, description: str, *, status: int | None = None, error: str | None = None,
                 field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.description = description
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class ApiError(DomainError):
    """A failure named where it happens: `ApiError(403, "forbidden", "…")`."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None,
                 *, field: str | None = None):
        super().__init__(description, status=status, error=error, field=field, headers=headers)


class LoginRequired(Exception):
    """A page needs a signed-in browser: a redirect to /login?next=…, back here after."""

    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


CSRF_FAILED_DESCRIPTION = "The form expired or was not sent from this site; reload the page and try again."


def csrf_failed() -> ApiError:
    return ApiError(400, "csrf_failed", CSRF_FAILED_DESCRIPTION)


HTTP_ERRORS = {
    400: ("invalid_request", "The request is malformed; check its parameters and body."),
    401: ("unauthorized", "Authentication is required; log in or send valid credentials."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "There is nothing at this address; check the URL."),
    405: ("method_not_allowed", "This address does not accept that HTTP method."),
    413: ("request_too_large", "The request body is larger than the 1 MiB this server accepts."),
    415: ("unsupported_media_type", "Send the body as application/json."),
    429: ("too_many_requests", "Too many attempts; wait a little and try again."),
}


def http_error(status: int) -> ApiError:
    error, description = HTTP_ERRORS[status]
    return ApiError(status, error, description)


def failure_for(exc: BaseException) -> ApiError:
    """What an exception means to the caller, logged as it deserves. The one registry."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DomainError):
        return ApiError(exc.status, exc.error, exc.description, exc.headers, field=exc.field)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        error, description = HTTP_ERRORS.get(status, ("error", exc.description or ""))
        if status == 400 and exc.description and "CSRF" in exc.description:
            error, description = "csrf_failed", CSRF_FAILED_DESCRIPTION
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        if status == 429 and getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return ApiError(status, error, description, headers)
    _rollback_quietly()
    if is_database_outage(exc):
        log.error("database unavailable", extra={"cause": type(getattr(exc, "orig", exc)).__name__})
        return ApiError(503, "temporarily_unavailable", "The database is unreachable; try again in a few seconds.",
                        {"Retry-After": "5"})
    if isinstance(exc, DataError):
        # A value the database cannot hold (a number out of range, a NUL byte): the caller's input.
        log.warning("database rejected a value", extra={"cause": type(exc.orig).__name__})
        return ApiError(400, "invalid_request", "A value in the request is out of range or malformed; check it.")
    if isinstance(exc, SealError):
        # A sealed value this instance cannot open, or no sealing key: its keyring lacks a key
        # (a rotation whose key has not reached it). Another instance may hold it; nothing is written.
        log.error("master key unavailable", extra={"cause": str(exc)})
        return ApiError(503, "temporarily_unavailable",
                        "This server cannot use its master key right now; try again in a few seconds.",
                        {"Retry-After": "5"})
    if isinstance(exc, OverflowError):
        # SQLite refuses integers beyond 64 bits with a bare OverflowError: the caller's number.
        log.warning("number out of range", extra={"cause": "OverflowError"})
        return ApiError(400, "invalid_request", "A number in the request is out of range; check it.")
    log.error("unhandled exception", exc_info=exc)
    return ApiError(500, "server_error", f"Something went wrong on our side (request {request_id()}).")


class Answer(NamedTuple):
    """A whole HTTP answer, outside Flask: what the hot handlers return."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


# One encoder for every answer: `json.dumps` with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def json_bytes(payload: Any) -> bytes:
    """The JSON body of every answer built outside Flask (and of every error), byte for byte as Flask writes it."""
    return _ENCODE(payload).encode() + b"\n"


def json_answer(status: int, payload: Any, headers=()) -> Answer:
    return Answer(status, [JSON_TYPE, *headers], json_bytes(payload))


def error_answer(failure: ApiError) -> Answer:
    return json_answer(failure.status, failure.body(), failure.headers.items())


def is_database_outage(exc: BaseException) -> bool:
    """Lost or refused connections, an exhausted pool: the database, not the request, is at fault."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _rollback_quietly() -> None:
    # No app context, or the connection is gone (the pool replaces it): nothing to roll back.
    with contextlib.suppress(Exception):
        db.session.rollback()


def init_app(app) -> None:
    """Flask's side: every exception through `failure_for`, rendered for the caller."""

    def wants_json() -> bool:
        if is_json_path(request.path):
            return True
        best = request.accept_mimetypes.best_match(["text/html", "application/json"])
        return best == "application/json" and not request.accept_mimetypes.accept_html

    @app.errorhandler(LoginRequired)
    def _login_required(exc: LoginRequired):
        return redirect(url_for("accounts.login", next=exc.next_url))

    @app.errorhandler(Exception)
    def _any(exc: Exception):
        failure = failure_for(exc)
        if wants_json():
            answer = error_answer(failure)
            return Response(answer.body, answer.status, answer.headers)
        page = render_template(
            "error.html", status=failure.status, error=failure.error, description=failure.description
        )
        return page, failure.status, failure.headers
