"""Access and refresh tokens: stored hashed, rotated, revoked by family; the bearer strategy."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list
from sqlalchemy import Integer, String, bindparam, exists, insert, select, update

from ..accounts.models import User
from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import token_hash
from ..extensions import db
from ..hotpath import read_one, write_one
from ..identity import AuthenticationFailed, Identity, Resource, Via, profile_columns, profile_from
from .clients import (
    ACCESS_TOKEN_SECONDS,
    OFFLINE_SCOPE,
    REFRESH_TOKEN_SECONDS,
    ClientRegistry,
    RegisteredClient,
    StaleClient,
)
from .dpop import DPoP, Refused
from .models import AuthorizationCode, OAuthClient, OAuthToken

log = logging.getLogger("authserver.oidc")



_TOKENS = OAuthToken.__table__
_USERS = User.__table__
_CLIENTS = OAuthClient.__table__
_OWNER = _CLIENTS.alias("owner")  # the client a token was issued to


def _with_user_and_owner(found):
    """`found` (a join holding the token) joined to the token's user and to its client, whose
    deletion makes the token revoked whatever its own row says: a token written while the
    client was being deleted is never accepted either."""
    return found.outerjoin(_USERS, _USERS.c.id == _TOKENS.c.user_id).outerjoin(
        _OWNER, _OWNER.c.client_id == _TOKENS.c.client_id)


# The token row with the few user columns introspection needs: one indexed query.
_TOKEN_WITH_USER = select(
    _TOKENS, _USERS.c.sub.label("user_sub"), _USERS.c.username.label("username"),
    _USERS.c.is_disabled.label("user_disabled"), _USERS.c.groups.label("user_groups"),
    _OWNER.c.disabled_at.label("client_disabled_at"),
).select_from(_with_user_and_owner(_TOKENS))
_BY_ACCESS = _TOKEN_WITH_USER.where(_TOKENS.c.access_token_hash == bindparam("hash"))
# A bearer credential answers as its user: the user's profile (prefixed `user__`), same one query.
_USER = "user__"
_BEARER = _TOKEN_WITH_USER.add_columns(*profile_columns(_USERS, _USER)).where(
    _TOKENS.c.access_token_hash == bindparam("hash")
)
_BY_REFRESH = _TOKEN_WITH_USER.where(_TOKENS.c.refresh_token_hash == bindparam("hash"))
_INSERT_TOKEN = insert(_TOKENS)

# The statements that confirm a client row kept by the worker (clients.ClientRegistry.decide).
_CALLER = _CLIENTS.alias("caller")


def _beside_caller(hash_column):
    """Introspection's first read: the token's row (NULLs when there is none) beside the
    introspecting client's current revision; no row at all when the client is deleted."""
    found = _with_user_and_owner(_CALLER.outerjoin(_TOKENS, hash_column == bindparam("hash")))
    return select(_CALLER.c.revision.label("caller_revision"), *_TOKEN_WITH_USER.selected_columns).select_from(
        found).where(_CALLER.c.client_id == bindparam("caller"), _CALLER.c.disabled_at.is_(None))


_BY_ACCESS_BESIDE_CALLER = _beside_caller(_TOKENS.c.access_token_hash)
_BY_REFRESH_BESIDE_CALLER = _beside_caller(_TOKENS.c.refresh_token_hash)
# client_credentials: the token is written only while its client's row is the one the request
# was decided on (same revision, not deleted); nothing is written otherwise.
_ISSUED = ("access_token_hash", "refresh_token_hash", "family_id", "code_id", "client_id", "user_id", "scope",
           "audience", "token_format", "sid", "auth_time", "acr", "amr", "issued_at", "expires_at",
           "refresh_expires_at", "claims", "dpop_jkt")
_INSERT_WHILE_CLIENT_CURRENT = insert(_TOKENS).from_select(
    _ISSUED,
    select(*(bindparam(name, type_=_TOKENS.c[name].type) for name in _ISSUED)).where(
        exists().where(
            _CLIENTS.c.client_id == bindparam("current_client", type_=String()),
            _CLIENTS.c.revision == bindparam("current_revision", type_=Integer()),
            _CLIENTS.c.disabled_at.is_(None),
        )
    ),
    include_defaults=False,
)


def _plausible(value) -> bool:
    """A string that may be one of our tokens: anything else is looked up nowhere."""
    return isinstance(value, str) and 0 < len(value) <= 4096


def record_revocation(audit: AuditLog, action: str, client_id: str, target: str, revoked: int) -> None:
    """A credential misused (a code or refresh token replayed, a session gone): its tokens were
    revoked; one failure row says how many, committed with the revocation."""
    audit.record(action, actor=f"client:{client_id}", target=target, outcome="failure",
                 details={"revoked_tokens": revoked}, commit=True)


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
        if self.row.revoked_at is not None or self.row.user_disabled or self.row.client_disabled_at is not None:
            return True
        return self.kind == "refresh_token" and self.row.rotated_at is not None

    def get_user(self):
        if self.row.user_id is None:
            return None
        return db.session.get(User, self.row.user_id)

    def get_client(self):
        return self._clients.get(self.row.client_id)

    def _public_client(self) -> bool:
        client = self.get_client()
        return client is not None and client.is_public

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
            "token_type": ("DPoP" if row.dpop_jkt else "Bearer") if self.kind == "access_token" else "refresh_token",
            "exp": int(self.expires_at.timestamp()),
            "iat": int(row.issued_at.timestamp()),
            "iss": issuer,
            "aud": audience[0] if len(audience) == 1 else audience,
        }
        if row.dpop_jkt and (self.kind == "access_token" or self._public_client()):
            body["cnf"] = {"jkt": row.dpop_jkt}  # RFC 9449 §6.2
        if row.user_sub is not None:
            body["sub"] = row.user_sub
            body["username"] = row.username
            # For the resource server's own access rules (e.g. mod_auth_openidc's `Require claim groups:…`).
            body["groups"] = list(row.user_groups or [])
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
    claims: dict | None = None  # the claims request it was issued under
    dpop_jkt: str | None = None  # the DPoP key the access token is bound to


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
             code: AuthorizationCode | None = None, parent=None, device=None,
             dpop_jkt: str | None = None) -> SavedToken:
        """Insert the issuance (a Core insert: this is the token endpoint's hot path). The
        session's sid, auth_time, acr and amr come from what it was issued for: the code, the
        refresh token, or the approved device authorization."""
        now = self.clock.now()
        origin = code or parent or device
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
            "claims": getattr(origin, "claims", None),
            "dpop_jkt": dpop_jkt,
        }
        row = SavedToken(**values)
        row.audience = values["audience"] = " ".join(client.token_audience(self.api_audience))
        if refresh:
            # A family's absolute end is set at its first issuance; rotations never move it.
            inherited = parent.family_expires_at if parent is not None else None
            family_end = inherited or now + self.refresh_absolute
            values["family_expires_at"] = row.family_expires_at = family_end
            values["refresh_expires_at"] = row.refresh_expires_at = min(now + self.refresh_idle, family_end)
        # A prepared INSERT with parameters: compiled once, not rebuilt per token.
        if grant_type == "client_credentials":
            # The insert commits on its own (one round trip on PostgreSQL), and only while the
            # client's row is the one this request was decided on; the audit log gets a count
            # per client at most once a minute, not a row per token.
            current = {"current_client": client.client_id, "current_revision": client.row.revision}
            if not write_one(_INSERT_WHILE_CLIENT_CURRENT, {**values, **current}):
                raise StaleClient(client.client_id)
            self.clients.confirm(client, client.row.revision)
            self.tally.note(client.client_id)
            return row
        db.session.execute(_INSERT_TOKEN, values)
        self.audit.record(
            "oauth.token_issued",
            actor=f"client:{client.client_id}",
            target=f"user:{user.username}" if user is not None else "",
            details={"grant_type": grant_type, "family": row.family_id},
        )
        db.session.commit()
        return row

    def find_access(self, value: str) -> IssuedToken | None:
        return self._read("access_token", token_hash(value)) if _plausible(value) else None

    def find_bearer(self, value: str) -> IssuedToken | None:
        """An access token presented as a credential, read with its user's columns (one query)."""
        if not _plausible(value):
            return None
        row = read_one(_BEARER, {"hash": token_hash(value)})
        return IssuedToken(row, self.clock, self.clients) if row else None

    def find(self, value: str, hint: str | None = None, *, address: str = "",
             caller: RegisteredClient | None = None) -> IssuedToken | None:
        """An access or refresh token; the hint only decides which is looked up first.

        With `caller` (the introspecting client), the first read also confirms the caller's
        row (`ClientRegistry.confirm`). (`address`: the caller's; a wrong guess of a 256-bit
        token needs no throttle.)"""
        if not _plausible(value):
            return None
        kinds = ["access_token", "refresh_token"]
        if hint == "refresh_token":
            kinds.reverse()
        hashed = token_hash(value)
        first, second = kinds
        return self._read(first, hashed, caller) or self._read(second, hashed)

    def _read(self, kind: str, hashed: str, caller: RegisteredClient | None = None) -> IssuedToken | None:
        """The token of that kind and hash; beside `caller`'s current revision, which it confirms."""
        access = kind == "access_token"
        if caller is None:
            row = read_one(_BY_ACCESS if access else _BY_REFRESH, {"hash": hashed})
        else:
            row = read_one(_BY_ACCESS_BESIDE_CALLER if access else _BY_REFRESH_BESIDE_CALLER,
                           {"hash": hashed, "caller": caller.client_id})
            self.clients.confirm(caller, row.caller_revision if row is not None else None)
            row = row if row.id is not None else None
        return IssuedToken(row, self.clock, self.clients, kind) if row is not None else None

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
            .where(
                OAuthToken.refresh_token_hash == hashed,
                OAuthToken.client_id == client_id,
                OAuthToken.rotated_at.is_(None),
                OAuthToken.revoked_at.is_(None),
                OAuthToken.refresh_expires_at > now,
            )
            .values(rotated_at=now)
        )
        if result.rowcount == 1:
            row = db.session.execute(_BY_REFRESH, {"hash": hashed}).first()
            if self.session_bound(row) and not self.sessions.keep_alive(row.sid):
                # No offline_access: the refresh token lived with its SSO session, which has ended.
                db.session.rollback()
                revoked = self.revoke_family(row.family_id)
                record_revocation(self.audit, "oauth.refresh_session_ended", client_id, f"family:{row.family_id}",
                                  revoked)
                return None
            return IssuedToken(row, self.clock, self.clients, "refresh_token")
        db.session.rollback()
        row = db.session.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == hashed))
        if row is not None and row.rotated_at is not None and row.client_id == client_id:
            revoked = self.revoke_family(row.family_id)
            record_revocation(self.audit, "oauth.refresh_reused", client_id, f"family:{row.family_id}", revoked)
            log.warning("refresh token reused; revoked its family", extra={"client_id": client_id})
        return None

    def move_session(self, old, new) -> None:
        """A new login of the same user in the same browser: tokens and codes of the old session
        belong to the new one (in the caller's transaction)."""
        db.session.execute(update(OAuthToken).where(OAuthToken.sid == old.id).values(sid=new.id))
        db.session.execute(update(AuthorizationCode).where(AuthorizationCode.sid == old.id).values(sid=new.id))

    def session_bound(self, row) -> bool:
        """Do tokens of this issuance (a token, a code or a device approval) live with their SSO
        session? Yes unless offline_access was granted."""
        return (
            self.sessions is not None and row.sid is not None and OFFLINE_SCOPE not in (scope_to_list(row.scope) or ())
        )

    def revoke_for_sessions(self, sids: Sequence[str]) -> int:
        """The tokens of ended SSO sessions, but for families the user let go offline (offline_access)."""
        if not sids:
            return 0
        rows = db.session.execute(
            select(OAuthToken.family_id, OAuthToken.scope).where(
                OAuthToken.sid.in_(list(sids)), OAuthToken.revoked_at.is_(None)
            )
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
            families = (
                select(OAuthToken.family_id)
                .where(OAuthToken.user_id == user_id, OAuthToken.refresh_token_hash.is_not(None))
                .scalar_subquery()
            )
            condition.append(OAuthToken.family_id.in_(families))
        return db.session.execute(
            update(OAuthToken)
            .where(*condition)
            .values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        ).rowcount

    def revoke_family(self, family_id: str) -> int:
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        return result.rowcount

    def revoke_signed_with(self, alg: str, signed_from: datetime, signed_until: datetime) -> int:
        """JWT access tokens (and their rows' refresh tokens) a withdrawn key of `alg` may have
        signed: those of clients signing with `alg`, issued while it signed (a few seconds
        either side: the switch between keys is not one instant in every worker)."""
        margin = timedelta(seconds=5)
        clients = select(OAuthClient.client_id).where(OAuthClient.id_token_signed_response_alg == alg)
        return db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.token_format == "jwt", OAuthToken.revoked_at.is_(None),
                   OAuthToken.client_id.in_(clients.scalar_subquery()),
                   OAuthToken.issued_at >= signed_from - margin, OAuthToken.issued_at <= signed_until + margin)
            .values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        ).rowcount

    def revoke_everything(self) -> int:
        """Every live access and refresh token of every client (after a restore from a backup)."""
        result = db.session.execute(
            update(OAuthToken).where(OAuthToken.revoked_at.is_(None)).values(revoked_at=self.clock.now())
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
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
                update(OAuthToken)
                .where(OAuthToken.id == token.row.id, OAuthToken.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        self.audit.record(
            "oauth.token_revoked", actor=actor, target=f"family:{token.row.family_id}", details={"kind": token.kind}
        )
        db.session.commit()

    def revoke_for_user_client(self, user_id: int, client_id: str) -> int:
        result = db.session.execute(
            update(OAuthToken)
            .where(OAuthToken.user_id == user_id, OAuthToken.client_id == client_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        return result.rowcount

    def sessions_of(self, user_id: int, client_id: str) -> set[str]:
        """The SSO sessions (sids) under which this client got tokens for this user."""
        rows = db.session.scalars(
            select(OAuthToken.sid).where(OAuthToken.user_id == user_id, OAuthToken.client_id == client_id,
                                         OAuthToken.sid.is_not(None)).distinct()
        )
        return set(rows)

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


class BearerTokenStrategy:
    """`Authorization: Bearer <access token>` issued by this provider, or `Authorization: DPoP
    <access token>` with a DPoP proof by the key it is bound to (RFC 9449 §7)."""

    name = "bearer"

    def __init__(self, tokens: TokenStore, proofs: DPoP, base: str):
        self.tokens = tokens
        self.proofs = proofs
        self.base = base

    def authenticate(self, req, resource: Resource | None = None) -> Identity | None:
        header = req.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value, scheme = value.strip(), scheme.lower()
        if scheme not in ("bearer", "dpop") or not value or value.startswith("pkid-"):
            return None
        token = self.tokens.find_bearer(value)
        if token is None or token.is_expired() or token.is_revoked():
            raise AuthenticationFailed("The access token is not valid, expired or revoked.", "invalid_token")
        try:
            self.proofs.check_presented(req.headers, resource or Resource(req.method, self.base + req.path),
                                        scheme, value, token.row.dpop_jkt)
        except Refused as refused:
            raise AuthenticationFailed(refused.description, refused.error, challenge=refused.challenge) from None
        if token.row.user_id is None:
            raise AuthenticationFailed("This access token belongs to a client, not a user.", "invalid_token")
        if self.tokens.api_audience not in token.audience:
            # RFC 9700 §2.3: a token an app got for itself is not a key to this server's own API.
            raise AuthenticationFailed(
                "This access token was issued to an app for its own use; this server's API accepts only tokens "
                "of its first-party apps (clients registered with --first-party).",
                "invalid_token",
            )
        profile = profile_from(token.row, _USER)
        if profile.is_disabled:
            raise AuthenticationFailed("The account is disabled.", "invalid_token")
        return Identity(
            profile=profile,
            load_user=lambda: db.session.get(User, profile.id),
            auth_method="oauth_token",
            via=Via.BEARER,
            scopes=frozenset(scope_to_list(token.get_scope()) or ()),
            amr=tuple(token.row.amr or ()),
            client_id=token.row.client_id,
        )
