""""Who is this request?": one chain of authentication strategies.

Each strategy looks for its own kind of credential (session cookie, bearer
token, API key). It answers an `Identity`, `None` when its credential is not
present, or raises `AuthenticationFailed` when its credential is present but
wrong, so a bad key is never silently ignored in favour of another one.
Capabilities add strategies in `build_services`; views only ask
`current_identity()` or decorate with `require_identity`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from flask import current_app, g, request

from .errors import ApiError

if TYPE_CHECKING:
    from .accounts.models import SsoSession, User

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Identity:
    user: "User"
    auth_method: str  # password, password+totp, api_key, oauth_token
    via: str  # the strategy: session, bearer, api_key
    scopes: frozenset[str] | None = None  # None: everything the user may do
    amr: tuple[str, ...] = ()
    session: "SsoSession | None" = None
    key_id: str | None = None
    client_id: str | None = None
    extra: dict = field(default_factory=dict)

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def actor(self) -> str:
        if self.key_id:
            return f"key:{self.key_id}"
        return f"user:{self.user.username}"

    def as_json(self) -> dict:
        user = self.user
        return {
            "sub": user.sub,
            "username": user.username,
            "email": user.email,
            "name": user.name,
            "groups": list(user.groups or []),
            "is_admin": bool(user.is_admin),
            "auth_method": self.auth_method,
            "amr": list(self.amr),
            "scopes": sorted(self.scopes) if self.scopes is not None else None,
            "key_id": self.key_id,
            "client_id": self.client_id,
        }


class AuthenticationFailed(Exception):
    """Credentials were presented and are not valid. The message is safe to show."""

    def __init__(self, description: str = "The credentials are not valid.", error: str = "invalid_credentials"):
        super().__init__(description)
        self.description = description
        self.error = error


class Strategy(Protocol):
    name: str

    def authenticate(self, req) -> Identity | None: ...


class IdentityResolver:
    def __init__(self, strategies: Iterable[Strategy] = ()):
        self.strategies: list[Strategy] = list(strategies)

    def add(self, strategy: Strategy, *, first: bool = False) -> None:
        if first:
            self.strategies.insert(0, strategy)
        else:
            self.strategies.append(strategy)

    def resolve(self, req) -> Identity | None:
        for strategy in self.strategies:
            identity = strategy.authenticate(req)
            if identity is not None:
                return identity
        return None


_UNSET = object()


def current_identity() -> Identity | None:
    """The caller's identity, resolved once per request. Raises AuthenticationFailed."""
    cached = g.get("_identity", _UNSET)
    if cached is _UNSET:
        try:
            cached = current_app.extensions["authserver"].identity.resolve(request)
        except AuthenticationFailed as exc:
            g._identity_error = exc
            cached = None
        g._identity = cached
    if g.get("_identity_error") is not None:
        raise g._identity_error
    return cached


def check_cookie_write(identity: Identity) -> None:
    """A JSON write riding on the session cookie must be JSON and same-origin (CSRF)."""
    if identity.via != "session" or request.method not in UNSAFE_METHODS:
        return
    if request.content_length and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    if not request.content_length and request.method != "DELETE" and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    origin = request.headers.get("Origin")
    if origin and not same_origin(origin):
        raise ApiError(403, "cross_origin", "This request came from another site; send it from this server's own pages.")


def same_origin(origin: str) -> bool:
    issuer = urlsplit(current_app.extensions["authserver"].settings.issuer)
    candidate = urlsplit(origin)
    own = {(issuer.scheme, issuer.netloc), (request.scheme, request.host)}
    return (candidate.scheme, candidate.netloc) in own


def require_identity(scope: str | None = None, *, admin: bool = False):
    """Decorator for JSON endpoints: 401 without valid credentials, 403 without the scope."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                identity = current_identity()
            except AuthenticationFailed as exc:
                raise ApiError(401, exc.error, exc.description, {"WWW-Authenticate": 'Bearer realm="authserver"'}) from None
            if identity is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "Log in, or send an API key or a bearer access token.",
                    {"WWW-Authenticate": 'Bearer realm="authserver"'},
                )
            check_cookie_write(identity)
            if admin and not (identity.user.is_admin and identity.has_scope("admin")):
                raise ApiError(403, "forbidden", "This needs an administrator.")
            if scope and not identity.has_scope(scope):
                raise ApiError(403, "insufficient_scope", f'These credentials lack the scope "{scope}".')
            return view(*args, **kwargs)

        return wrapper

    return decorate
