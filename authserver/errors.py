"""One place for error formats.

JSON `{"error", "error_description"}` under `/api/`, on OAuth endpoints and
for clients that ask for JSON; an HTML page for browsers elsewhere. An
unexpected exception is logged with the request id and answered with a bare
body; a database outage is a 503.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, redirect, render_template, request, url_for
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .extensions import db
from .web import LoginRequired

log = logging.getLogger("authserver.errors")

# Paths whose callers are programs: they always get JSON.
JSON_PREFIXES = ("/api/", "/oauth/", "/.well-known/", "/userinfo", "/jwks")
# ...except the OAuth pages a person's browser is sent to: they answer in HTML.
BROWSER_PATHS = ("/oauth/authorize", "/oauth/consent", "/oauth/logout")


def is_json_path(path: str) -> bool:
    return path.startswith(JSON_PREFIXES) and not path.startswith(BROWSER_PATHS)


class ApiError(Exception):
    """A failure with a status, an error code and a description naming cause and fix."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def wants_json() -> bool:
    if is_json_path(request.path):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


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


def render_error(status: int, error: str, description: str, headers: dict | None = None):
    if wants_json():
        return {"error": error, "error_description": description}, status, headers or {}
    return render_template("error.html", status=status, error=error, description=description), status, headers or {}


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return render_error(exc.status, exc.error, exc.description, exc.headers)

    @app.errorhandler(LoginRequired)
    def _login_required(exc: LoginRequired):
        return redirect(url_for("accounts.login", next=exc.next_url))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        error, default = HTTP_ERRORS.get(status, ("error", exc.description or ""))
        description = default
        if status == 400 and exc.description and "CSRF" in exc.description:
            error, description = "csrf_failed", "The form expired or was not sent from this site; reload the page and try again."
        response = render_error(status, error, description)
        if status == 405 and exc.valid_methods:
            response[2]["Allow"] = ", ".join(exc.valid_methods)
        if status == 429 and getattr(exc, "retry_after", None):
            response[2]["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(DBAPIError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeout)
    def _database_error(exc: Exception):
        _rollback_quietly()
        if is_database_outage(exc):
            log.error("database unavailable", extra={"cause": type(getattr(exc, "orig", exc)).__name__})
            return render_error(
                503,
                "temporarily_unavailable",
                "The database is unreachable; try again in a few seconds.",
                {"Retry-After": "5"},
            )
        if isinstance(exc, DataError):
            # A value the database cannot hold (a number out of range, a NUL byte): the caller's input.
            log.warning("database rejected a value", extra={"cause": type(exc.orig).__name__})
            return render_error(400, "invalid_request", "A value in the request is out of range or malformed; check it.")
        return _unexpected(exc)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeout)
    def _redis_error(exc: Exception):
        # The shared rate-limit store is down: refuse rather than check credentials unthrottled.
        _rollback_quietly()
        log.error("rate-limit store unavailable", extra={"cause": type(exc).__name__})
        return render_error(
            503,
            "temporarily_unavailable",
            "The rate-limit store is unreachable; try again in a few seconds.",
            {"Retry-After": "5"},
        )

    @app.errorhandler(OverflowError)
    def _overflow(exc: OverflowError):
        # SQLite refuses integers beyond 64 bits with a bare OverflowError: the caller's number.
        _rollback_quietly()
        log.warning("number out of range", extra={"cause": "OverflowError"})
        return render_error(400, "invalid_request", "A number in the request is out of range; check it.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        _rollback_quietly()
        log.exception("unhandled exception")
        return render_error(500, "server_error", f"Something went wrong on our side (request {g.get('request_id', '-')}).")


def is_database_outage(exc: Exception) -> bool:
    """Lost or refused connections, an exhausted pool: the database, not the request, is at fault."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _rollback_quietly() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone; the pool will replace it
        pass
