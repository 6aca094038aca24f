"""What the views of every package share: the services, the client's address, safe redirects,
the page guard, and the cookies of a browser login (the SSO session, the pending second step,
the forms' CSRF secret)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import Response, current_app, request
from flask import session as flask_session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

from .access_rules import allowed_redirect
from .cookies import (
    PASSKEY_LOGIN_COOKIE,
    PENDING_LOGIN_COOKIE,
    PENDING_LOGIN_LIFETIME,
    PUSHED_REQUEST_COOKIE,
    SESSION_COOKIE,
)
from .errors import Answer, ApiError, LoginRequired
from .identity import Identity, Via, identity_or_none


def services():
    """The wired-up services of the running app (see services.build_services)."""
    return current_app.extensions["authserver"]


def client_ip() -> str:
    return request.remote_addr or ""


def safe_next(target: str | None, default: str = "/account") -> str:
    """This server's own paths (no scheme, no host, no `//` or backslash tricks), or an
    absolute URL on a forward-auth domain (AUTHSERVER_FORWARD_AUTH_DOMAINS): never elsewhere."""
    if not target or len(target) > 2000:
        return default
    if allowed_redirect(target, services().settings.forward_auth_domains):
        return target
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


class DatabaseInt(IntegerConverter):
    """`<int:...>` URL parts that fit a 64-bit column; a longer number is simply not found (404)."""

    def __init__(
        self, url_map, fixed_digits: int = 0, min: int | None = None, max: int | None = None, signed: bool = False
    ):
        super().__init__(url_map, fixed_digits, min, 2**63 - 1 if max is None else max, signed)


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session (it carries the forms' CSRF secret), opened only
    when its cookie is there: the stock one builds a signer on every request, which
    the cookie-less API and forward-auth requests pay for nothing."""

    def open_session(self, app, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def signed_in(*, admin: bool = False, full: bool = True) -> Identity:
    """The signed-in browser user of an HTML page.

    Logged out: LoginRequired (a redirect to the login page, back here after).
    `full`: the session must come from a password login, not from an API key
    (a leaked key must not change the password or mint more keys).
    `admin`: an administrator with the admin scope, else 403.
    """
    identity = identity_or_none()
    if identity is None or identity.via != Via.SESSION:
        raise LoginRequired(login_return_path())
    if full and identity.key_id:
        raise ApiError(
            403, "forbidden", "This page needs a password login; a session opened with an API key cannot use it."
        )
    if admin and not identity.is_admin:
        raise ApiError(403, "forbidden", "This page is for administrators.")
    return identity


def login_return_path() -> str:
    """Where the login page should send the user back to: this page, or its section for a form post."""
    if request.method == "GET":
        return safe_next(request.full_path.rstrip("?"))
    for section in ("/admin", "/device"):
        if request.path.startswith(section):
            return section
    return "/account"


# -- the cookies of a browser login --------------------------------------------


def session_cookie_name() -> str:
    return services().settings.cookie_name(SESSION_COOKIE, shared_domain=True)


def pending_login_cookie_name() -> str:
    return services().settings.cookie_name(PENDING_LOGIN_COOKIE)


def pushed_cookie_name() -> str:
    return services().settings.cookie_name(PUSHED_REQUEST_COOKIE)


# Paths without forms: the JSON API (guarded by its content type and origin check), machines' endpoints.
NO_FORMS = (
    "/api/",
    "/.well-known/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/static/",
    "/oauth/token",
    "/oauth/introspect",
    "/oauth/revoke",
    "/oauth/userinfo",
    "/oauth/jwks",
)


def bind_csrf_to_session() -> None:
    """A signed-in browser's form secret is derived from its SSO session, whatever its form
    cookie says: a token minted elsewhere (an attacker's own browser, a cookie planted by a
    sibling host) or before the login does not work on this session's forms."""
    if session_cookie_name() not in request.cookies or request.path.startswith(NO_FORMS):
        return
    identity = identity_or_none()
    if identity is None or identity.via != Via.SESSION:
        return
    session_id = identity.extra.get("session_id") or identity.session.id
    key = services().settings.secret_key.encode()
    bound = hmac.new(key, b"csrf-secret:" + session_id.encode(), hashlib.sha256).hexdigest()
    if flask_session.get("csrf_token") != bound:
        flask_session["csrf_token"] = bound


def rotate_csrf_secret() -> None:
    """A new CSRF secret for the forms from now on (at login and logout): a token read before
    the login does not work after it."""
    flask_session.pop("csrf_token", None)


def set_session_cookie(response, opened):
    settings = services().settings
    rotate_csrf_secret()
    response.set_cookie(
        session_cookie_name(),
        opened.cookie_value,
        max_age=settings.session_absolute_seconds,
        httponly=True,
        secure=settings.is_https,
        samesite="Lax",
        path="/",
        domain=settings.session_cookie_domain,
    )
    return response


def clear_session_cookie(response):
    settings = services().settings
    rotate_csrf_secret()
    response.delete_cookie(
        session_cookie_name(),
        path="/",
        domain=settings.session_cookie_domain,
        httponly=True,
        samesite="Lax",
        secure=settings.is_https,
    )
    return response


def passkey_login_cookie_name() -> str:
    return services().settings.cookie_name(PASSKEY_LOGIN_COOKIE)


def set_pending_login_cookie(response, handle: str, *, name: str | None = None):
    response.set_cookie(
        name or pending_login_cookie_name(),
        handle,
        max_age=int(PENDING_LOGIN_LIFETIME.total_seconds()),
        httponly=True,
        secure=services().settings.is_https,
        samesite="Lax",
        path="/",  # __Host- cookies are for the whole host
    )
    return response


def clear_pending_login_cookie(response, *, name: str | None = None):
    response.delete_cookie(
        name or pending_login_cookie_name(), path="/", httponly=True, samesite="Lax",
        secure=services().settings.is_https,
    )
    return response


def respond(answer: Answer) -> Response:
    """A hot handler's answer (authserver/dispatch.py) as the Flask route's response."""
    return Response(answer.body, answer.status, answer.headers)
