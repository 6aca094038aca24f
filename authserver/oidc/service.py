"""Clients, codes, tokens, consents and back-channel logout: the OIDC provider's storage.

The Authlib grants and endpoints (grants.py, server.py) call into these
stores; views never touch the models directly.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import requests
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..accounts.models import User
from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import SecretSealer, keyed_hash, random_token, same, token_hash
from ..extensions import db
from ..hotpath import attach, read_one, write_one
from ..identity import AuthenticationFailed, Identity, Profile, Via
from ..sealing import SealedColumn
from .claims import ExtraClaimError, parse_extra_claim
from .models import AssertionJti, AuthorizationCode, Consent, OAuthClient, OAuthToken
from .redirects import RedirectUriError, check_registration, redirect_uri_allowed
from .signing import SUPPORTED_ALGS, SigningKeyService

log = logging.getLogger("authserver.oidc")

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 3600
ID_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600  # the default idle lifetime (AUTHSERVER_REFRESH_IDLE_SECONDS)
LOGOUT_TOKEN_SECONDS = 120

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
TOKEN_FORMATS = ("opaque", "jwt")
DEFAULT_SCOPE = "openid profile email groups"
# Grants a client gets when registration names none: refresh tokens are opt-in.
DEFAULT_GRANTS = ("authorization_code",)
# Scopes that manage this server: only first-party clients may hold them, never through consent.
MANAGEMENT_SCOPES = frozenset({"admin"})
OFFLINE_SCOPE = "offline_access"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class ClientError(Exception):
    """A client registration is invalid; the message says what to change."""


# -- clients -------------------------------------------------------------------


def append_query(uri: str, params) -> str:
    """Add query parameters without re-assembling the URI.

    urllib's urlunparse turns `app.immich:///oauth-callback` into
    `app.immich:/oauth-callback` (an empty authority is dropped for schemes
    it does not know), and the app would never see its callback. Registered
    redirect URIs have no fragment, so appending is exact.
    """
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    if not pairs:
        return uri
    joiner = "" if uri.endswith(("?", "&")) else ("&" if "?" in uri else "?")
    return uri + joiner + urlencode(pairs)


def validate_redirect_uri(uri: str) -> str:
    try:
        return check_registration(uri)
    except RedirectUriError as exc:
        raise ClientError(str(exc)) from None


class RegisteredClient(ClientMixin):
    """Authlib's view of a client: an immutable row of `oauth_clients`; checks secrets with the keyed hash."""

    def __init__(self, row, pepper: bytes):
        self.row = row
        self._pepper = pepper
        self.client_id = row.client_id
        self.id_token_signed_response_alg = row.id_token_signed_response_alg

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def is_public(self) -> bool:
        return self.row.is_public

    @property
    def client_metadata(self) -> dict:
        return {"post_logout_redirect_uris": list(self.row.post_logout_redirect_uris or [])}

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        # OpenID Connect requires redirect_uri on every request: no default.
        return None

    def get_allowed_scope(self, scope):
        """The requested scope, or None (invalid_scope) if it asks beyond the registration.

        Scopes that manage this server are never allowed to a third-party client, whatever
        an older registration says.
        """
        allowed = set(scope_to_list(self.row.scope) or [])
        if not self.row.is_first_party:
            allowed -= MANAGEMENT_SCOPES
        if not scope:
            return ""
        requested = scope_to_list(scope)
        if not set(requested) <= allowed:
            return None
        return " ".join(dict.fromkeys(requested))

    @property
    def skips_consent(self) -> bool:
        return bool(self.row.is_trusted or self.row.is_first_party)

    def token_audience(self, api_audience: str) -> list[str]:
        """Who this client's access tokens are meant for: itself, the resource servers it
        was registered with, and this server's own API for a first-party client."""
        audience = [self.client_id, *(self.row.audiences or [])]
        if self.row.is_first_party:
            audience.append(api_audience)
        return list(dict.fromkeys(audience))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri_allowed(self.row.redirect_uris or (), redirect_uri)

    def check_post_logout_redirect_uri(self, uri) -> bool:
        return redirect_uri_allowed(self.row.post_logout_redirect_uris or (), uri)

    def check_client_secret(self, client_secret):
        if not self.row.secret_hmac or not isinstance(client_secret, str) or len(client_secret) > 256:
            return False
        # Constant time: the comparison must not tell how much of a guess was right.
        return same(keyed_hash(self._pepper, client_secret), self.row.secret_hmac)

    def check_endpoint_auth_method(self, method, endpoint):
        registered = self.row.token_endpoint_auth_method
        if registered in SECRET_METHODS:
            return method in SECRET_METHODS
        return method == registered

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in (self.row.grant_types or [])

    def check_grant_type(self, grant_type):
        return grant_type in (self.row.grant_types or [])


def _secret_context(client_id: str) -> bytes:
    return b"client-secret:" + client_id.encode()


_CLIENTS = OAuthClient.__table__
_CLIENT_BY_ID = select(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("client_id"))


@dataclass(frozen=True)
class CreatedClient:
    row: OAuthClient
    client_secret: str | None  # shown once, at creation


class ClientRegistry:
    """Registered clients.

    A client's registration does not change once made, so each worker keeps
    the rows it has read for CACHE_SECONDS: the token and introspection
    endpoints then cost one indexed query (the token's) instead of two. A
    future "disable client" takes effect in every worker within that time.
    """

    CACHE_SECONDS = 10.0

    def __init__(self, pepper: bytes, sealer: SecretSealer, audit: AuditLog, clock: Clock,
                 monotonic: Callable[[], float] = time.monotonic):
        self.pepper = pepper
        self.sealer = sealer
        self.audit = audit
        self.clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, RegisteredClient]] = {}

    def get(self, client_id: str | None) -> RegisteredClient | None:
        if not client_id or not isinstance(client_id, str) or len(client_id) > 64:
            return None
        now = self._monotonic()
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = read_one(_CLIENT_BY_ID, {"client_id": client_id})
        if row is None or row.disabled_at is not None:
            self._cache.pop(client_id, None)
            return None
        client = RegisteredClient(row, self.pepper)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[client_id] = (now + self.CACHE_SECONDS, client)
        return client

    def find_by_name(self, name: str) -> OAuthClient | None:
        return db.session.scalar(select(OAuthClient).where(OAuthClient.name == name).limit(1))

    def create(
        self,
        *,
        name: str,
        redirect_uris: Sequence[str] = (),
        public: bool = False,
        trusted: bool = False,
        first_party: bool = False,
        introspect: bool = False,
        pkce_required: bool = True,
        audiences: Sequence[str] = (),
        broker: bool = False,
        allow_missing_state: bool = False,
        scope: str | None = None,
        grant_types: Sequence[str] = (),
        token_endpoint_auth_method: str | None = None,
        id_token_signed_response_alg: str = "RS256",
        access_token_format: str = "opaque",
        extra_claims: Iterable[str] = (),
        backchannel_logout_uri: str | None = None,
        post_logout_redirect_uris: Sequence[str] = (),
        jwks: dict | None = None,
        actor: str = "system",
    ) -> CreatedClient:
        name = (name or "").strip()
        if not 1 <= len(name) <= 200:
            raise ClientError("A client name has 1 to 200 characters.")
        redirect_uris = [validate_redirect_uri(u) for u in redirect_uris]
        post_logout = [validate_redirect_uri(u) for u in post_logout_redirect_uris]
        grants = list(dict.fromkeys(grant_types or DEFAULT_GRANTS))
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if unknown:
            raise ClientError(f"Unknown grant type {unknown[0]!r}; use one of {', '.join(GRANT_TYPES)}.")
        if "authorization_code" in grants and not redirect_uris:
            raise ClientError("The authorization_code grant needs at least one --redirect-uri.")
        method = token_endpoint_auth_method or ("none" if public else "client_secret_basic")
        if method not in AUTH_METHODS:
            raise ClientError(f"Unknown token endpoint auth method {method!r}; use one of {', '.join(AUTH_METHODS)}.")
        if public != (method == "none"):
            raise ClientError("A public client authenticates with 'none', and only a public client may.")
        if public and "client_credentials" in grants:
            raise ClientError("A public client cannot use client_credentials: it holds no credentials.")
        if method == "private_key_jwt" and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) and jwks["keys"]):
            raise ClientError("private_key_jwt needs the client's public keys as a JWKS ({\"keys\": [...]}).")
        if id_token_signed_response_alg not in SUPPORTED_ALGS:
            raise ClientError(f"The ID token algorithm must be one of {', '.join(SUPPORTED_ALGS)}.")
        if access_token_format not in TOKEN_FORMATS:
            raise ClientError(f"The access token format must be one of {', '.join(TOKEN_FORMATS)}.")
        if backchannel_logout_uri:
            parts = urlsplit(backchannel_logout_uri)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
                raise ClientError("The back-channel logout URI must be an absolute http(s) URL without a fragment.")
        try:
            claims = dict(parse_extra_claim(text) for text in extra_claims)
        except ExtraClaimError as exc:
            raise ClientError(str(exc)) from None
        scope_list = scope_to_list(scope if scope is not None else DEFAULT_SCOPE) or []
        if any(len(s) > 100 or not s.isprintable() for s in scope_list):
            raise ClientError("Scopes are printable words of up to 100 characters, separated by spaces.")
        managing = sorted(MANAGEMENT_SCOPES.intersection(scope_list))
        if managing and not first_party:
            raise ClientError(
                f"The scope {managing[0]!r} manages this server: only a first-party client (--first-party, "
                "this server's own app) may hold it; a third-party app cannot be given it, not even by consent."
            )
        if not pkce_required and public:
            raise ClientError("A public client always uses PKCE; only a confidential client can be exempted (--no-pkce).")
        audience_list = list(dict.fromkeys(a.strip() for a in audiences if a and a.strip()))
        for audience in audience_list:
            if len(audience) > 64 or self.registered(audience) is None:
                raise ClientError(
                    f"The audience {audience[:64]!r} is not a registered client: name a resource server's client_id "
                    "(registered with --introspect)."
                )

        secret = None if method in ("none", "private_key_jwt") else random_token(32)
        row = OAuthClient(
            client_id=secrets.token_urlsafe(18),
            secret_hmac=keyed_hash(self.pepper, secret) if secret else None,
            secret_sealed=None,
            name=name,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout,
            grant_types=grants,
            scope=" ".join(dict.fromkeys(scope_list)),
            is_public=public,
            is_trusted=trusted or first_party,
            is_first_party=first_party,
            can_introspect=introspect,
            pkce_required=pkce_required,
            audiences=audience_list,
            is_broker=broker,
            allow_missing_state=allow_missing_state,
            token_endpoint_auth_method=method,
            id_token_signed_response_alg=id_token_signed_response_alg,
            access_token_format=access_token_format,
            extra_claims=claims,
            backchannel_logout_uri=backchannel_logout_uri or None,
            jwks=jwks,
            created_at=self.clock.now(),
        )
        db.session.add(row)
        if broker and secret:
            row.secret_sealed = self.sealer.seal(secret.encode(), _secret_context(row.client_id))
        db.session.flush()
        self.audit.record("client.create", actor=actor, target=f"client:{row.client_id}",
                          details={"name": name, "public": public, "grants": grants, "first_party": first_party,
                                   "introspect": introspect, "pkce_required": pkce_required})
        db.session.commit()
        return CreatedClient(row, secret)

    def registered(self, client_id: str) -> OAuthClient | None:
        """A client's row for the admin console (not deleted); None when there is none."""
        if not client_id or len(client_id) > 64:
            return None
        return db.session.scalar(
            select(OAuthClient).where(OAuthClient.client_id == client_id, OAuthClient.disabled_at.is_(None))
        )

    def list_registered(self) -> list[OAuthClient]:
        return list(db.session.scalars(
            select(OAuthClient).where(OAuthClient.disabled_at.is_(None)).order_by(OAuthClient.name, OAuthClient.id)
        ))

    def rotate_secret(self, client_id: str, *, actor: str) -> str:
        """A new secret (shown once); the old one stops working here at once, in other workers
        within CACHE_SECONDS."""
        row = self.registered(client_id)
        if row is None:
            raise ClientError("There is no such client; it may have been deleted.")
        if row.token_endpoint_auth_method not in SECRET_METHODS:
            raise ClientError("This client signs in without a secret (public or private_key_jwt): there is none to rotate.")
        secret = random_token(32)
        row.secret_hmac = keyed_hash(self.pepper, secret)
        if row.is_broker:
            row.secret_sealed = self.sealer.seal(secret.encode(), _secret_context(row.client_id))
        self.audit.record("client.secret_rotate", actor=actor, target=f"client:{row.client_id}")
        db.session.commit()
        self._cache.pop(row.client_id, None)
        return secret

    def delete(self, client_id: str, *, actor: str) -> OAuthClient:
        """Retire a client for good: refused from now on, its tokens revoked and its consents forgotten.

        The row stays (disabled) so the audit log and old token rows keep naming it.
        """
        row = self.registered(client_id)
        if row is None:
            raise ClientError("There is no such client; it may have been deleted already.")
        now = self.clock.now()
        row.disabled_at = now
        revoked = db.session.execute(
            update(OAuthToken).where(OAuthToken.client_id == row.client_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        db.session.execute(delete(Consent).where(Consent.client_id == row.client_id))
        self.audit.record("client.delete", actor=actor, target=f"client:{row.client_id}",
                          details={"name": row.name, "revoked_tokens": revoked})
        db.session.commit()
        self._cache.pop(row.client_id, None)
        return row

    def broker_secret(self, client_id: str) -> str | None:
        """The secret of a confidential broker client, for the broker's own code exchange."""
        row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if row is None or not row.is_broker or not row.secret_sealed:
            return None
        return self.sealer.unseal(row.secret_sealed, _secret_context(client_id)).decode()

    def reseal_all(self, sealer) -> int:
        """Re-seal broker client secrets under `sealer` (for `master-key rotate`; current transaction, no commit)."""
        return SealedColumn(OAuthClient, "secret_sealed", lambda row: _secret_context(row.client_id)).reseal(sealer)

    def remember_assertion(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a private_key_jwt assertion id; False if it was seen before (a replay)."""
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            return False
        now = self.clock.now()
        db.session.execute(delete(AssertionJti).where(AssertionJti.expires_at < now))
        db.session.add(AssertionJti(client_id=client_id, jti=jti, expires_at=max(expires_at, now)))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True


# -- codes ---------------------------------------------------------------------


class TicketSpent(Exception):
    """The login ticket of an authorization request was used for a code already."""


class CodeStore:
    """Authorization codes: at most 60 s, redeemed by one conditional UPDATE."""

    def __init__(self, clock: Clock, audit: AuditLog, tokens: TokenStore):
        self.clock = clock
        self.audit = audit
        self.tokens = tokens

    def save(self, code: str, *, client_id: str, user_id: int, redirect_uri: str, scope: str,
             nonce: str | None, code_challenge: str | None, code_challenge_method: str | None, session,
             login_ticket: str | None = None) -> None:
        """Raises TicketSpent when `login_ticket` was used by another code (a race: the unique index decides)."""
        now = self.clock.now()
        db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - timedelta(hours=1)))
        db.session.add(AuthorizationCode(
            code_hash=token_hash(code),
            client_id=client_id,
            user_id=user_id,
            redirect_uri=redirect_uri,
            scope=scope,
            nonce=nonce or None,
            code_challenge=code_challenge or None,
            code_challenge_method=code_challenge_method or None,
            sid=session.id if session else None,
            auth_time=session.auth_time if session else now,
            acr=session.acr if session else "",
            amr=list(session.amr or []) if session else [],
            login_ticket=login_ticket,
            created_at=now,
            expires_at=now + timedelta(seconds=CODE_SECONDS),
        ))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if login_ticket is not None and self.ticket_spent(login_ticket):
                raise TicketSpent() from None
            raise

    def ticket_spent(self, ticket_id: str) -> bool:
        return db.session.scalar(
            select(AuthorizationCode.id).where(AuthorizationCode.login_ticket == ticket_id).limit(1)
        ) is not None

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return db.session.scalar(
            select(AuthorizationCode.id).where(AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce).limit(1)
        ) is not None

    def claim(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code's row, marked used in the still-open transaction; None if it cannot be redeemed.

        The conditional UPDATE is the single point of truth: of two redemptions,
        even at the same instant, exactly one changes the row. The row stays
        locked until the tokens are saved, so a second redemption sees the
        tokens of the first and revokes them.
        """
        if not isinstance(code, str) or not 0 < len(code) <= 256:
            return None
        hashed = token_hash(code)
        now = self.clock.now()
        db.session.commit()  # start the claim on a fresh snapshot (SQLite upgrades read locks badly)
        result = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == hashed, AuthorizationCode.client_id == client_id,
                   AuthorizationCode.used_at.is_(None), AuthorizationCode.expires_at > now)
            .values(used_at=now)
        )
        if result.rowcount == 1:
            return db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == hashed))
        db.session.rollback()
        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == hashed))
        if row is not None and row.used_at is not None and row.client_id == client_id:
            revoked = self.tokens.revoke_for_code(row.id)
            self.audit.record("oauth.code_replayed", actor=f"client:{client_id}", target=f"code:{row.id}",
                              outcome="failure", details={"revoked_tokens": revoked})
            db.session.commit()
            log.warning("authorization code redeemed twice; revoked its tokens", extra={"client_id": client_id})
        return None


# -- tokens --------------------------------------------------------------------


_TOKENS = OAuthToken.__table__
_USERS = User.__table__
# The token row with the few user columns introspection needs: one indexed query.
_TOKEN_WITH_USER = select(
    _TOKENS, _USERS.c.sub.label("user_sub"), _USERS.c.username.label("username"),
    _USERS.c.is_disabled.label("user_disabled"),
).select_from(_TOKENS.outerjoin(_USERS, _USERS.c.id == _TOKENS.c.user_id))
_BY_ACCESS = _TOKEN_WITH_USER.where(_TOKENS.c.access_token_hash == bindparam("hash"))
# A bearer credential answers as its user: every user column (prefixed `user__`), same one query.
_USER = "user__"
_BEARER = _TOKEN_WITH_USER.add_columns(*(column.label(_USER + column.key) for column in _USERS.columns)).where(
    _TOKENS.c.access_token_hash == bindparam("hash")
)
_BY_REFRESH = _TOKEN_WITH_USER.where(_TOKENS.c.refresh_token_hash == bindparam("hash"))
_INSERT_TOKEN = insert(_TOKENS)


class IssuedToken(TokenMixin):
    """Authlib's view of a token (an immutable row), as an access token or as a refresh token."""

    def __init__(self, row, clock: Clock, clients: ClientRegistry, kind: str = "access_token"):
        self.row = row
        self.kind = kind
        self._clock = clock
        self._clients = clients
        self.scope = row.scope
        self.client_id = row.client_id

    def check_client(self, client):
        return self.row.client_id == client.get_client_id()

    def get_scope(self):
        return self.row.scope

    def get_expires_in(self):
        return int((self.row.expires_at - self.row.issued_at).total_seconds())

    @property
    def expires_at(self) -> datetime:
        if self.kind == "refresh_token":
            return self.row.refresh_expires_at or self.row.issued_at
        return self.row.expires_at

    def is_expired(self):
        return self._clock.now() >= self.expires_at

    def is_revoked(self):
        if self.row.revoked_at is not None or self.row.user_disabled:
            return True
        return self.kind == "refresh_token" and self.row.rotated_at is not None

    def get_user(self):
        if self.row.user_id is None:
            return None
        if _USER + "id" in self.row._fields:  # read with the token (find_bearer)
            return attach(User, self.row.prefixed(_USER))
        return db.session.get(User, self.row.user_id)

    def get_client(self):
        return self._clients.get(self.row.client_id)

    @property
    def audience(self) -> list[str]:
        return (self.row.audience or "").split() or [self.row.client_id]

    def meant_for(self, client_id: str) -> bool:
        """May this resource server learn about the token? Its own client's, or an access token
        naming it in its audience (a refresh token is only ever for the client it was issued to)."""
        if client_id == self.row.client_id:
            return True
        return self.kind == "access_token" and client_id in self.audience

    def introspect(self, issuer: str) -> dict:
        row = self.row
        audience = self.audience
        body = {
            "active": True,
            "scope": row.scope,
            "client_id": row.client_id,
            "token_type": "Bearer" if self.kind == "access_token" else "refresh_token",
            "exp": int(self.expires_at.timestamp()),
            "iat": int(row.issued_at.timestamp()),
            "iss": issuer,
            "aud": audience[0] if len(audience) == 1 else audience,
        }
        if row.user_sub is not None:
            body["sub"] = row.user_sub
            body["username"] = row.username
        else:
            body["sub"] = row.client_id
        return body


@dataclass
class SavedToken:
    """The values of one issuance as inserted (read back for the ID token's session claims)."""

    access_token_hash: str
    refresh_token_hash: str | None
    family_id: str
    code_id: int | None
    client_id: str
    user_id: int | None
    scope: str
    token_format: str
    sid: str | None
    auth_time: datetime | None
    acr: str
    amr: list
    issued_at: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None
    audience: str = ""
    family_expires_at: datetime | None = None


class IssuanceTally:
    """client_credentials issuance in the audit log, aggregated: per client and worker, a row
    at the first token and then at most one a minute, with the number of tokens issued since
    the previous row (`oauth.client_credentials_issued`, details.tokens). A worker's count not
    yet written when it stops is lost: at most a minute's worth for each client."""

    def __init__(self, audit: AuditLog, clock: Clock, seconds: int = 60):
        self.audit = audit
        self.clock = clock
        self.interval = timedelta(seconds=seconds)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, datetime | None]] = {}

    def note(self, client_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            count, last = self._pending.get(client_id, (0, None))
            count += 1
            if last is not None and now - last < self.interval:
                self._pending[client_id] = (count, last)
                return
            self._pending[client_id] = (0, now)
        self.audit.record("oauth.client_credentials_issued", actor=f"client:{client_id}",
                          details={"tokens": count}, commit=True)


class TokenStore:
    """Issued tokens, stored as SHA-256 of their value; rotation and family revocation."""

    def __init__(self, clock: Clock, audit: AuditLog, clients: ClientRegistry, *, api_audience: str,
                 sessions=None, refresh_idle_seconds: int = REFRESH_TOKEN_SECONDS,
                 refresh_absolute_seconds: int = 3 * REFRESH_TOKEN_SECONDS):
        self.clock = clock
        self.audit = audit
        self.clients = clients
        self.api_audience = api_audience
        self.sessions = sessions  # SessionService: refresh tokens without offline_access live with theirs
        self.tally = IssuanceTally(audit, clock)
        self.refresh_idle = timedelta(seconds=refresh_idle_seconds)
        self.refresh_absolute = timedelta(seconds=refresh_absolute_seconds)

    def save(self, token: dict, *, client: RegisteredClient, user, grant_type: str,
             code: AuthorizationCode | None = None, parent=None) -> SavedToken:
        """Insert the issuance (a Core insert: this is the token endpoint's hot path)."""
        now = self.clock.now()
        origin = code or parent
        refresh = token.get("refresh_token")
        values = {
            "access_token_hash": token_hash(token["access_token"]),
            "refresh_token_hash": token_hash(refresh) if refresh else None,
            "family_id": parent.family_id if parent else secrets.token_hex(16),
            "code_id": code.id if code else None,
            "client_id": client.client_id,
            "user_id": user.id if user is not None else None,
            "scope": token.get("scope", ""),
            "token_format": client.row.access_token_format,
            "sid": origin.sid if origin else None,
            "auth_time": origin.auth_time if origin else None,
            "acr": origin.acr if origin else "",
            "amr": list(origin.amr or []) if origin else [],
            "issued_at": now,
            "expires_at": now + timedelta(seconds=int(token.get("expires_in") or ACCESS_TOKEN_SECONDS)),
            "refresh_expires_at": None,
        }
        row = SavedToken(**values)
        row.audience = values["audience"] = " ".join(client.token_audience(self.api_audience))
        if refresh:
            # A family's absolute end is set at its first issuance; rotations never move it.
            family_end = parent.family_expires_at if parent is not None and parent.family_expires_at else now + self.refresh_absolute
            values["family_expires_at"] = row.family_expires_at = family_end
            values["refresh_expires_at"] = row.refresh_expires_at = min(now + self.refresh_idle, family_end)
        # A prepared INSERT with parameters: compiled once, not rebuilt per token.
        if grant_type == "client_credentials":
            # The insert commits on its own (one round trip on PostgreSQL); the audit log gets
            # a count per client at most once a minute, not a row per token.
            write_one(_INSERT_TOKEN, values)
            self.tally.note(client.client_id)
            return row
        db.session.execute(_INSERT_TOKEN, values)
        self.audit.record("oauth.token_issued", actor=f"client:{client.client_id}",
                          target=f"user:{user.username}" if user is not None else "",
                          details={"grant_type": grant_type, "family": row.family_id})
        db.session.commit()
        return row

    def find_access(self, value: str) -> IssuedToken | None:
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            return None
        row = read_one(_BY_ACCESS, {"hash": token_hash(value)})
        return IssuedToken(row, self.clock, self.clients) if row else None

    def find_bearer(self, value: str) -> IssuedToken | None:
        """An access token presented as a credential, read with its user's columns (one query)."""
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            return None
        row = read_one(_BEARER, {"hash": token_hash(value)})
        return IssuedToken(row, self.clock, self.clients) if row else None

    def find_refresh(self, value: str) -> IssuedToken | None:
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            return None
        row = read_one(_BY_REFRESH, {"hash": token_hash(value)})
        return IssuedToken(row, self.clock, self.clients, "refresh_token") if row else None

    def find(self, value: str, hint: str | None = None, *, address: str = "") -> IssuedToken | None:
        """An access or refresh token; the hint only decides which is looked up first.

        (`address`: the introspection caller's; a wrong guess of a 256-bit token needs no throttle.)"""
        lookups = [self.find_access, self.find_refresh]
        if hint == "refresh_token":
            lookups.reverse()
        for lookup in lookups:
            found = lookup(value)
            if found is not None:
                return found
        return None

    def rotate_refresh(self, value: str, client_id: str) -> IssuedToken | None:
        """Claim a refresh token for one exchange (conditional UPDATE, in the open transaction).

        A token that was already exchanged is being reused: someone holds a
        stolen copy, so the whole family is revoked.
        """
        if not isinstance(value, str) or not 0 < len(value) <= 4096:
            return None
        hashed = token_hash(value)
        now = self.clock.now()
        db.session.commit()
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.refresh_token_hash == hashed, OAuthToken.client_id == client_id,
                   OAuthToken.rotated_at.is_(None), OAuthToken.revoked_at.is_(None),
                   OAuthToken.refresh_expires_at > now)
            .values(rotated_at=now)
        )
        if result.rowcount == 1:
            row = db.session.execute(_BY_REFRESH, {"hash": hashed}).first()
            if self._session_bound(row) and not self.sessions.keep_alive(row.sid):
                # No offline_access: the refresh token lived with its SSO session, which has ended.
                db.session.rollback()
                revoked = self.revoke_family(row.family_id)
                self.audit.record("oauth.refresh_session_ended", actor=f"client:{client_id}",
                                  target=f"family:{row.family_id}", outcome="failure",
                                  details={"revoked_tokens": revoked})
                db.session.commit()
                return None
            return IssuedToken(row, self.clock, self.clients, "refresh_token")
        db.session.rollback()
        row = db.session.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == hashed))
        if row is not None and row.rotated_at is not None and row.client_id == client_id:
            revoked = self.revoke_family(row.family_id)
            self.audit.record("oauth.refresh_reused", actor=f"client:{client_id}", target=f"family:{row.family_id}",
                              outcome="failure", details={"revoked_tokens": revoked})
            db.session.commit()
            log.warning("refresh token reused; revoked its family", extra={"client_id": client_id})
        return None

    def move_session(self, old, new) -> None:
        """A new login of the same user in the same browser: tokens and codes of the old session
        belong to the new one (in the caller's transaction)."""
        db.session.execute(update(OAuthToken).where(OAuthToken.sid == old.id).values(sid=new.id))
        db.session.execute(update(AuthorizationCode).where(AuthorizationCode.sid == old.id).values(sid=new.id))

    def _session_bound(self, row) -> bool:
        return (self.sessions is not None and row.sid is not None
                and OFFLINE_SCOPE not in (scope_to_list(row.scope) or ()))

    def revoke_for_sessions(self, sids: Sequence[str]) -> int:
        """The tokens of ended SSO sessions, but for families the user let go offline (offline_access)."""
        if not sids:
            return 0
        rows = db.session.execute(
            select(OAuthToken.family_id, OAuthToken.scope).where(OAuthToken.sid.in_(list(sids)),
                                                                 OAuthToken.revoked_at.is_(None))
        )
        families = {family for family, scope in rows if OFFLINE_SCOPE not in (scope_to_list(scope) or ())}
        if not families:
            return 0
        return db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id.in_(sorted(families)), OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        ).rowcount

    def revoke_for_user(self, user_id: int, *, refresh_only: bool = False) -> int:
        """Every live token of a user (disabled account), or every refresh family (password change)."""
        condition = [OAuthToken.user_id == user_id, OAuthToken.revoked_at.is_(None)]
        if refresh_only:
            families = select(OAuthToken.family_id).where(
                OAuthToken.user_id == user_id, OAuthToken.refresh_token_hash.is_not(None)
            ).scalar_subquery()
            condition.append(OAuthToken.family_id.in_(families))
        return db.session.execute(
            update(OAuthToken).where(*condition).values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        ).rowcount

    def revoke_family(self, family_id: str) -> int:
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        return result.rowcount

    def revoke_for_code(self, code_id: int) -> int:
        families = select(OAuthToken.family_id).where(OAuthToken.code_id == code_id).scalar_subquery()
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id.in_(families), OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    def revoke(self, token: IssuedToken, *, actor: str) -> None:
        """RFC 7009: a refresh token takes its whole family (and their access tokens) with it."""
        if token.kind == "refresh_token":
            self.revoke_family(token.row.family_id)
        else:
            db.session.execute(
                update(OAuthToken).where(OAuthToken.id == token.row.id, OAuthToken.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        self.audit.record("oauth.token_revoked", actor=actor, target=f"family:{token.row.family_id}",
                          details={"kind": token.kind})
        db.session.commit()

    def revoke_for_user_client(self, user_id: int, client_id: str) -> int:
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.user_id == user_id, OAuthToken.client_id == client_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        return result.rowcount

    def clients_of_sessions(self, sids: Sequence[str]) -> dict[str, set[str]]:
        """Which clients got tokens under each SSO session."""
        if not sids:
            return {}
        rows = db.session.execute(
            select(OAuthToken.sid, OAuthToken.client_id).where(OAuthToken.sid.in_(list(sids))).distinct()
        )
        found: dict[str, set[str]] = {}
        for sid, client_id in rows:
            found.setdefault(sid, set()).add(client_id)
        return found


# -- consent -------------------------------------------------------------------


class ConsentStore:
    def __init__(self, clock: Clock, audit: AuditLog, tokens: TokenStore):
        self.clock = clock
        self.audit = audit
        self.tokens = tokens

    def covers(self, user_id: int, client_id: str, scope: str) -> bool:
        row = self._get(user_id, client_id)
        if row is None:
            return False
        return set(scope_to_list(scope) or ()) <= set(scope_to_list(row.scope) or ())

    def grant(self, user, client_id: str, scope: str) -> None:
        now = self.clock.now()
        row = self._get(user.id, client_id)
        scopes = scope_to_list(scope) or []
        if row is None:
            db.session.add(Consent(user_id=user.id, client_id=client_id, scope=" ".join(scopes),
                                   created_at=now, updated_at=now))
        else:
            merged = list(dict.fromkeys((scope_to_list(row.scope) or []) + scopes))
            row.scope = " ".join(merged)
            row.updated_at = now
        self.audit.record("consent.grant", actor=f"user:{user.username}", target=f"client:{client_id}",
                          details={"scope": " ".join(scopes)})
        try:
            db.session.commit()
        except IntegrityError:  # the same consent given twice at once: the other one won
            db.session.rollback()

    def list_for(self, user_id: int) -> list[tuple[Consent, OAuthClient | None]]:
        rows = db.session.execute(
            select(Consent, OAuthClient)
            .outerjoin(OAuthClient, OAuthClient.client_id == Consent.client_id)
            .where(Consent.user_id == user_id)
            .order_by(Consent.created_at)
        )
        return [(consent, client) for consent, client in rows]

    def revoke(self, user, client_id: str) -> bool:
        """Forget the consent and revoke the client's tokens for this user."""
        row = self._get(user.id, client_id)
        if row is None:
            return False
        db.session.delete(row)
        revoked = self.tokens.revoke_for_user_client(user.id, client_id)
        self.audit.record("consent.revoke", actor=f"user:{user.username}", target=f"client:{client_id}",
                          details={"revoked_tokens": revoked})
        db.session.commit()
        return True

    def _get(self, user_id: int, client_id: str) -> Consent | None:
        return db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))


# -- back-channel logout -------------------------------------------------------


class LogoutDelivery(Protocol):
    def __call__(self, uri: str, logout_token: str) -> bool: ...


def post_logout_token(uri: str, logout_token: str, *, attempts: int = 3, timeout: float = 3.0,
                      pause: Callable[[float], None] | None = None) -> bool:
    """POST a logout token; retry a few times on network errors and 5xx, never longer than needed."""
    pause = pause or time.sleep
    for attempt in range(attempts):
        try:
            response = requests.post(uri, data={"logout_token": logout_token}, timeout=timeout,
                                     headers={"Cache-Control": "no-store"}, allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("back-channel logout delivery failed", extra={"uri": uri, "error": type(exc).__name__})
        else:
            if response.status_code < 300:
                return True
            if response.status_code < 500:
                log.warning("back-channel logout refused", extra={"uri": uri, "status": response.status_code})
                return False
        if attempt + 1 < attempts:
            pause(0.5 * 2**attempt)
    return False


class BackchannelLogout:
    """Tells clients that an SSO session ended, from a background thread pool.

    The logout tokens are signed in the request (they need the database);
    only the HTTP delivery runs in the background, so the logout page never
    waits on a slow or dead client.
    """

    def __init__(self, issuer: str, clock: Clock, signing: SigningKeyService, tokens: TokenStore,
                 clients: ClientRegistry, deliver: LogoutDelivery = post_logout_token, max_workers: int = 4):
        self.issuer = issuer
        self.clock = clock
        self.signing = signing
        self.tokens = tokens
        self.clients = clients
        self.deliver = deliver
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="backchannel-logout")

    def logout_token(self, client: RegisteredClient, user, sid: str) -> str:
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_SECONDS,
            "jti": secrets.token_urlsafe(16),
            "sub": user.sub,
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return self.signing.sign(claims, client.id_token_signed_response_alg, typ="logout+jwt")

    def sessions_ended(self, sessions: Sequence) -> list:
        """Queue a logout token for every client with tokens under these sessions.

        A failure here is logged and swallowed: the user's logout has already happened.
        """
        try:
            return self._queue(sessions)
        except Exception:
            log.exception("could not queue back-channel logout")
            return []

    def _queue(self, sessions: Sequence) -> list:
        by_sid = self.tokens.clients_of_sessions([s.id for s in sessions])
        futures = []
        for session in sessions:
            for client_id in sorted(by_sid.get(session.id, ())):
                client = self.clients.get(client_id)
                if client is None or not client.row.backchannel_logout_uri:
                    continue
                token = self.logout_token(client, session.user, session.id)
                futures.append(self._executor.submit(self.deliver, client.row.backchannel_logout_uri, token))
        return futures


# -- the bearer strategy -------------------------------------------------------


class BearerTokenStrategy:
    """`Authorization: Bearer <access token>` issued by this provider."""

    name = "bearer"

    def __init__(self, tokens: TokenStore):
        self.tokens = tokens

    def authenticate(self, req) -> Identity | None:
        header = req.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or value.startswith("pkid-"):
            return None
        token = self.tokens.find_bearer(value)
        if token is None or token.is_expired() or token.is_revoked():
            raise AuthenticationFailed("The access token is not valid, expired or revoked.", "invalid_token")
        if token.row.user_id is None:
            raise AuthenticationFailed("This access token belongs to a client, not a user.", "invalid_token")
        if self.tokens.api_audience not in token.audience:
            # RFC 9700 §2.3: a token an app got for itself is not a key to this server's own API.
            raise AuthenticationFailed(
                "This access token was issued to an app for its own use; this server's API accepts only tokens "
                "of its first-party apps (clients registered with --first-party).", "invalid_token")
        user_values = token.row.prefixed(_USER)
        if user_values["is_disabled"]:
            raise AuthenticationFailed("The account is disabled.", "invalid_token")
        return Identity(
            profile=Profile(user_values),
            load_user=lambda: attach(User, user_values),
            auth_method="oauth_token",
            via=Via.BEARER,
            scopes=frozenset(scope_to_list(token.get_scope()) or ()),
            amr=tuple(token.row.amr or ()),
            client_id=token.row.client_id,
        )
