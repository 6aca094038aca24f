"""Small helpers shared by the HTML and JSON views."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

from .forwardauth.rules import allowed_redirect


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

    def __init__(self, url_map, fixed_digits: int = 0, min: int | None = None, max: int | None = None, signed: bool = False):
        super().__init__(url_map, fixed_digits, min, 2**63 - 1 if max is None else max, signed)


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session (it carries the forms' CSRF secret), opened only
    when its cookie is there: the stock one builds a signer on every request, which
    the cookie-less API and forward-auth requests pay for nothing."""

    def open_session(self, app, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


class LoginRequired(Exception):
    """A page needs a signed-in browser; errors.py answers with a redirect to /login?next=…"""

    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


def signed_in(*, admin: bool = False, full: bool = True):
    """The signed-in browser user of an HTML page.

    Logged out: LoginRequired (a redirect to the login page, back here after).
    `full`: the session must come from a password login, not from an API key
    (a leaked key must not change the password or mint more keys).
    `admin`: an administrator with the admin scope, else 403.
    """
    from .accounts.views import identity_or_none  # late: accounts imports this module
    from .errors import ApiError

    identity = identity_or_none()
    if identity is None or identity.via != "session":
        raise LoginRequired(login_return_path())
    if full and identity.key_id:
        raise ApiError(403, "forbidden", "This page needs a password login; a session opened with an API key cannot use it.")
    if admin and not identity.is_admin:
        raise ApiError(403, "forbidden", "This page is for administrators.")
    return identity


def login_return_path() -> str:
    """Where the login page should send the user back to: this page, or its section for a form post."""
    if request.method == "GET":
        return safe_next(request.full_path.rstrip("?"))
    return "/admin" if request.path.startswith("/admin") else "/account"
