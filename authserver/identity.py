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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urlsplit

from flask import current_app, g, request

from .errors import ApiError

if TYPE_CHECKING:
    from .accounts.models import SsoSession, User

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Via(StrEnum):
    """The strategy that established an identity: which credential the request carried."""

    SESSION = "session"  # the SSO session cookie
    BEARER = "bearer"  # an OAuth access token
    API_KEY = "api_key"  # a pkid- key in a header


class Identity:
    """Who the caller is, as one strategy established it.

    `profile` holds the user's columns as they were read with the credential (a
    `UserProfile`, or the User itself when a view had it already). `user` (and `session`
    for a cookie) are the ORM objects, loaded by primary key the first time a view asks.
    """

    __slots__ = (
        "_load_session",
        "_load_user",
        "_session",
        "_user",
        "amr",
        "auth_method",
        "client_id",
        "extra",
        "key_id",
        "profile",
        "scopes",
        "via",
    )

    def __init__(
        self,
        *,
        auth_method: str,  # password, password+totp, password+passkey, passkey, api_key, oauth_token
        via: Via,
        user: User | None = None,
        profile: UserProfile | User | None = None,
        load_user: Callable[[], User] | None = None,
        scopes: frozenset[str] | None = None,  # None: everything the user may do
        amr: tuple[str, ...] = (),
        session: SsoSession | None = None,
        load_session: Callable[[], SsoSession] | None = None,
        key_id: str | None = None,
        client_id: str | None = None,
        extra: dict | None = None,
    ):
        if user is None and load_user is None:
            raise TypeError("an Identity needs its user, or a way to load it")
        self.profile = profile if profile is not None else user
        self.auth_method = auth_method
        self.via = via
        self.scopes = scopes
        self.amr = amr
        self.key_id = key_id
        self.client_id = client_id
        self.extra = extra if extra is not None else {}
        self._user, self._load_user = user, load_user
        self._session, self._load_session = session, load_session

    @property
    def user(self) -> User:
        if self._user is None:
            self._user = self._load_user()
        return self._user

    @property
    def session(self) -> SsoSession | None:
        if self._session is None and self._load_session is not None:
            self._session = self._load_session()
        return self._session

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        """An administrator acting with admin rights (a key or token needs the `admin` scope)."""
        return bool(self.profile.is_admin) and self.has_scope("admin")

    @property
    def actor(self) -> str:
        if self.key_id:
            return f"key:{self.key_id}"
        return f"user:{self.profile.username}"

    def as_json(self) -> dict:
        user = self.profile
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


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A user's columns as read with a credential (one query, no ORM session): what `/api/me`,
    forward-auth and scope checks need. Change the user through `Identity.user`."""

    id: int
    sub: str
    username: str
    email: str | None
    name: str | None
    groups: list[str] | None
    is_admin: bool
    is_disabled: bool


PROFILE_FIELDS = tuple(field.name for field in fields(UserProfile))


def profile_columns(users, prefix: str) -> list:
    """The users table's profile columns, labelled `prefix + name`, to read beside a credential."""
    return [users.c[name].label(prefix + name) for name in PROFILE_FIELDS]


def profile_from(row, prefix: str) -> UserProfile:
    """The profile in a row read with `profile_columns(…, prefix)`."""
    return UserProfile(*(getattr(row, prefix + name) for name in PROFILE_FIELDS))


class AuthenticationFailed(Exception):
    """Credentials were presented and are not valid. The message is safe to show."""

    def __init__(self, description: str = "The credentials are not valid.", error: str = "invalid_credentials",
                 retry_after: int | None = None, challenge: str | None = None):
        super().__init__(description)
        self.description = description
        self.error = error
        self.retry_after = retry_after  # when the caller's address is throttled: seconds to wait
        self.challenge = challenge or BEARER_CHALLENGE  # the WWW-Authenticate to answer with


BEARER_CHALLENGE = 'Bearer realm="authserver"'


class Resource(NamedTuple):
    """What a request asks for, as a credential bound to it names it (a DPoP proof's `htm` and
    `htu`): the method and URL without query. None: the request itself, at this server."""

    method: str | None
    url: str


class Strategy(Protocol):
    name: str

    def authenticate(self, req, resource: Resource | None = None) -> Identity | None: ...


class IdentityResolver:
    def __init__(self, strategies: Iterable[Strategy] = ()):
        self.strategies: list[Strategy] = list(strategies)

    def add(self, strategy: Strategy, *, first: bool = False) -> None:
        if first:
            self.strategies.insert(0, strategy)
        else:
            self.strategies.append(strategy)

    def resolve(self, req, resource: Resource | None = None) -> Identity | None:
        """The caller's identity; `resource` when the request asks for something elsewhere (forward-auth)."""
        for strategy in self.strategies:
            identity = strategy.authenticate(req, resource)
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


def identity_or_none() -> Identity | None:
    """The caller's identity; None when there is none or its credential is not valid."""
    try:
        return current_identity()
    except AuthenticationFailed:
        return None


def check_cookie_write(identity: Identity) -> None:
    """A JSON write riding on the session cookie must be JSON and same-origin (CSRF)."""
    if identity.via != Via.SESSION or request.method not in UNSAFE_METHODS:
        return
    if request.content_length and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    if not request.content_length and request.method != "DELETE" and not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    origin = request.headers.get("Origin")
    if origin and not same_origin(origin):
        raise ApiError(403, "cross_origin",
                       "This request came from another site; send it from this server's own pages.")


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
                raise ApiError(401, exc.error, exc.description, {"WWW-Authenticate": exc.challenge}) from None
            if identity is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "Log in, or send an API key or a bearer access token.",
                    {"WWW-Authenticate": BEARER_CHALLENGE},
                )
            check_cookie_write(identity)
            if admin and not identity.is_admin:
                raise ApiError(403, "forbidden", "This needs an administrator.")
            if scope and not identity.has_scope(scope):
                raise ApiError(403, "insufficient_scope", f'These credentials lack the scope "{scope}".')
            return view(*args, **kwargs)

        return wrapper

    return decorate
