"""Registered clients: the registry (rows kept per worker, confirmed by revision), registration
checks, Authlib's view of a client."""

from __future__ import annotations

import logging
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import SecretSealer, keyed_hash, random_token, same
from ..errors import DomainError
from ..extensions import db
from ..hotpath import read_one
from ..sealing import SealedColumn
from .claims import STANDARD_SCOPES, ExtraClaimError, parse_extra_claim
from .models import AssertionJti, Consent, OAuthClient, OAuthToken
from .redirects import RedirectUriError, check_registration, redirect_uri_allowed
from .signing import SUPPORTED_ALGS

log = logging.getLogger("authserver.oidc")

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 3600
ID_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600  # the default idle lifetime (AUTHSERVER_REFRESH_IDLE_SECONDS)
LOGOUT_TOKEN_SECONDS = 120

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"  # RFC 8628
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", DEVICE_CODE_GRANT)
# Short names registration accepts too (`client create --grant device_code`).
GRANT_ALIASES = {"device_code": DEVICE_CODE_GRANT}
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


class ClientError(DomainError):
    """A client registration is invalid; the message says what to change, `field` which
    registration setting it is about (the admin console's form field of the same name)."""

    error = "invalid_client_metadata"




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


def validate_redirect_uri(uri: str, field: str = "redirect_uris") -> str:
    try:
        return check_registration(uri)
    except RedirectUriError as exc:
        raise ClientError(str(exc), field=field) from None


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


def new_client_id() -> str:
    """24 URL-safe characters (144 bits) that never start with "-": a client_id is pasted into
    command lines, where a leading dash reads as an option."""
    while True:
        client_id = secrets.token_urlsafe(18)
        if client_id[0] != "-":
            return client_id


def _secret_context(client_id: str) -> bytes:
    return b"client-secret:" + client_id.encode()


_CLIENTS = OAuthClient.__table__
_CLIENT_BY_ID = select(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("client_id"))


def name_key(name: str) -> str:
    """What two client names are compared by: their compatibility form (NFKC: a full-width
    letter is the letter), case-folded, spacing collapsed, invisible characters dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join("".join(c for c in folded if unicodedata.category(c) != "Cf").split())


# What a client signs its private_key_jwt assertions with (discovery's
# token_endpoint_auth_signing_alg_values_supported), and the keys that can verify them.
ASSERTION_ALGS = ("RS256", "ES256")
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_JWK_LISTS = {"key_ops", "x5c"}


def check_client_jwks(jwks) -> dict:
    """A client's JWKS for private_key_jwt: 1 to 10 public RSA (2048 bits or more) or EC P-256
    signing keys, nothing private, nothing else; ClientError (field "jwks") saying what is wrong."""
    return {"keys": [member for member, _ in _checked_keys(jwks)]}


def client_key_set(jwks) -> KeySet:
    """The keys that verify a client's assertions: its JWKS, checked as at registration."""
    return KeySet([key for _, key in _checked_keys(jwks)])


def _checked_keys(jwks) -> list[tuple[dict, RSAKey | ECKey]]:
    """Each key of a client's JWKS, as sent and as imported (see check_client_jwks)."""
    def refuse(reason: str):
        return ClientError(f"The client's public keys (JWKS) {reason}.", field="jwks")

    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise refuse('must be a JSON object {"keys": [...]}')
    keys = jwks["keys"]
    if not 1 <= len(keys) <= 10:
        raise refuse("must hold at least one key and at most ten")
    checked = []
    for key in keys:
        if not isinstance(key, dict):
            raise refuse("must have each key a JSON object")
        if _PRIVATE_MEMBERS & key.keys():
            raise refuse("must hold public keys only: a private or symmetric key member was sent")
        if key.get("kty") not in ("RSA", "EC") or (key.get("kty") == "EC" and key.get("crv") != "P-256"):
            raise refuse(f"must hold RSA (for {ASSERTION_ALGS[0]}) or EC P-256 (for {ASSERTION_ALGS[1]}) keys")
        for name, value in key.items():
            plain = isinstance(value, str) and len(value) <= 2048
            listed = name in _JWK_LISTS and isinstance(value, list) and all(isinstance(v, str) for v in value)
            if not (isinstance(name, str) and (plain or listed)):
                raise refuse(f"hold a key member {str(name)[:20]!r} that is not a valid JWK value")
        if key.get("alg") not in (None, *ASSERTION_ALGS) or key.get("use") not in (None, "sig"):
            raise refuse(f"must be signing keys (use \"sig\", alg {' or '.join(ASSERTION_ALGS)})")
        try:
            imported = (RSAKey if key["kty"] == "RSA" else ECKey).import_key(key)
            public = imported.public_key
        except (JoseError, ValueError, TypeError, KeyError, OverflowError):
            raise refuse("hold a key that is not a valid public key") from None
        if key["kty"] == "RSA" and (public.key_size < 2048 or public.public_numbers().e.bit_length() > 32):
            raise refuse("hold an RSA key under 2048 bits or with an exponent this server does not take")
        checked.append((dict(key), imported))
    return checked


@dataclass(frozen=True)
class CreatedClient:
    row: OAuthClient
    client_secret: str | None  # shown once, at creation


class StaleClient(OAuth2Error):
    """A client row kept by this worker was changed since it was read: what was decided on it
    does not count. Raised by the statement that confirms the row; answered (503) only if the
    row changed again while the request was decided on a fresh read."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "The client's registration changed while this request was answered; send it again."

    def __init__(self, client_id: str):
        super().__init__(self.description)
        self.client_id = client_id


@dataclass
class KeptUse:
    """The kept client rows one decision used, and which of them a statement confirmed."""

    used: dict[str, RegisteredClient] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)

    @property
    def all_confirmed(self) -> bool:
        return self.used.keys() <= self.confirmed


_KEPT_USE: ContextVar[KeptUse | None] = ContextVar("authserver_kept_clients", default=None)
KEEP_AT_MOST = 1024  # clients kept per worker; past that the store starts afresh


class ClientRegistry:
    """Registered clients.

    A look-up reads the client's row, and the worker keeps the row it read (its revision is
    raised by the database on every change: a trigger, migration 0017). Only the two
    hot endpoints decide on a kept row (`decide`): client_credentials issuance and
    introspection, whose one statement (the token INSERT, the token read) also confirms
    that the row's `revision` is still the current one. An answer counts only when every
    kept row it used was confirmed; otherwise (the row changed: a rotated secret, a deleted
    client, new scopes) the request is decided again on rows read afresh, before anything
    is written. So a change made through any worker or host is seen by every worker on its
    next request, as when every look-up read the row, and the hot paths save that read.
    """

    def __init__(self, pepper: bytes, sealer: SecretSealer, audit: AuditLog, clock: Clock,
                 api_scopes: Sequence[str] = ()):
        self.pepper = pepper
        # What a client may be registered with: OpenID Connect's scopes and this server's API's.
        self.known_scopes = tuple(dict.fromkeys((*STANDARD_SCOPES, *api_scopes)))
        self.sealer = sealer
        self.audit = audit
        self.clock = clock
        self._kept: dict[str, RegisteredClient] = {}

    def get(self, client_id: str | None) -> RegisteredClient | None:
        if not client_id or not isinstance(client_id, str) or len(client_id) > 64:
            return None
        use = _KEPT_USE.get()
        if use is not None:
            # One decision sees one copy of a client, the one its statement confirms, even if
            # another thread replaces the kept row meanwhile.
            kept = use.used.get(client_id) or self._kept.get(client_id)
            if kept is not None:
                use.used[client_id] = kept
                return kept
        row = read_one(_CLIENT_BY_ID, {"client_id": client_id})
        if row is None or row.disabled_at is not None:
            self._kept.pop(client_id, None)
            return None
        client = RegisteredClient(row, self.pepper)
        if len(self._kept) >= KEEP_AT_MOST and client_id not in self._kept:
            self._kept.clear()
        self._kept[client_id] = client
        return client

    def decide(self, decision: Callable[[], tuple]) -> tuple:
        """Run `decision` (an endpoint's whole answer) letting client look-ups use kept rows.

        Its answer counts if every kept row it used was confirmed (`confirm`) by a statement
        it ran. Otherwise (a kept row found changed, or a refusal decided before any statement
        confirmed the row) the decision runs again on rows read afresh. A decision must write
        nothing before the statement that confirms its client (the callers: the token INSERT
        of client_credentials, the first token read of introspection).
        """
        use = KeptUse()
        reset = _KEPT_USE.set(use)
        try:
            answer = decision()
        except StaleClient as stale:
            self._kept.pop(stale.client_id, None)
        except OAuth2Error:
            if use.all_confirmed:
                raise
        else:
            if use.all_confirmed:
                return answer
        finally:
            _KEPT_USE.reset(reset)
        for client_id in use.used:
            self._kept.pop(client_id, None)
        db.session.rollback()
        return decision()

    def confirm(self, client: RegisteredClient, current_revision: int | None) -> None:
        """A statement read `current_revision` for the client's row (None: deleted or disabled):
        the row the decision used is current, or StaleClient."""
        if current_revision is None or current_revision != client.row.revision:
            raise StaleClient(client.client_id)
        use = _KEPT_USE.get()
        if use is not None:
            use.confirmed.add(client.client_id)

    def find_by_name(self, name: str) -> OAuthClient | None:
        """The client (not deleted) of that name."""
        return db.session.scalar(
            select(OAuthClient).where(OAuthClient.name == name, OAuthClient.disabled_at.is_(None)).limit(1)
        )

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
        require_par: bool = False,
        require_dpop: bool = False,
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
        name = " ".join((name or "").split())
        if not 1 <= len(name) <= 200:
            raise ClientError("A client name has 1 to 200 characters.", field="name")
        if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn") for c in name):
            raise ClientError("A client name is shown on consent pages: it may not hold invisible, control or "
                              "direction-changing characters.", field="name")
        key = name_key(name)
        taken = db.session.scalars(select(OAuthClient.name).where(OAuthClient.disabled_at.is_(None)))
        if any(name_key(other) == key for other in taken):
            raise ClientError(f"A client named {name!r} exists already (names are compared ignoring case, spacing "
                              "and compatibility forms); choose another: consent pages and the account page show "
                              "clients by name.", field="name")
        redirect_uris = [validate_redirect_uri(u) for u in redirect_uris]
        post_logout = [validate_redirect_uri(u, "post_logout_redirect_uris") for u in post_logout_redirect_uris]
        grants = list(dict.fromkeys(GRANT_ALIASES.get(g, g) for g in (grant_types or DEFAULT_GRANTS)))
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if unknown:
            raise ClientError(f"Unknown grant type {unknown[0]!r}; use one of {', '.join(GRANT_TYPES)}.",
                              field="grant_types")
        if "authorization_code" in grants and not redirect_uris:
            raise ClientError("The authorization_code grant needs at least one --redirect-uri.", field="redirect_uris")
        method = token_endpoint_auth_method or ("none" if public else "client_secret_basic")
        if method not in AUTH_METHODS:
            raise ClientError(
                f"Unknown token endpoint auth method {method!r}; use one of {', '.join(AUTH_METHODS)}.",
                field="token_endpoint_auth_method",
            )
        if public != (method == "none"):
            raise ClientError(
                "A public client authenticates with 'none', and only a public client may.",
                field="token_endpoint_auth_method",
            )
        if public and "client_credentials" in grants:
            raise ClientError(
                "A public client cannot use client_credentials: it holds no credentials.", field="grant_types"
            )
        if method == "private_key_jwt":
            jwks = check_client_jwks(jwks)
        elif jwks:
            raise ClientError("Public keys (JWKS) are for private_key_jwt clients only.", field="jwks")
        if id_token_signed_response_alg not in SUPPORTED_ALGS:
            raise ClientError(
                f"The ID token algorithm must be one of {', '.join(SUPPORTED_ALGS)}.",
                field="id_token_signed_response_alg",
            )
        if access_token_format not in TOKEN_FORMATS:
            raise ClientError(
                f"The access token format must be one of {', '.join(TOKEN_FORMATS)}.", field="access_token_format"
            )
        if backchannel_logout_uri:
            parts = urlsplit(backchannel_logout_uri)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
                raise ClientError(
                    "The back-channel logout URI must be an absolute http(s) URL without a fragment.",
                    field="backchannel_logout_uri",
                )
        try:
            claims = dict(parse_extra_claim(text) for text in extra_claims)
        except ExtraClaimError as exc:
            raise ClientError(str(exc), field="extra_claims") from None
        scope_list = scope_to_list(scope if scope is not None else DEFAULT_SCOPE) or []
        if any(len(s) > 100 or not s.isprintable() for s in scope_list):
            raise ClientError("Scopes are printable words of up to 100 characters, separated by spaces.", field="scope")
        unknown_scopes = [s for s in scope_list if s not in self.known_scopes]
        if unknown_scopes:
            raise ClientError(
                f"Unknown scope {unknown_scopes[0]!r}; a client may hold {' '.join(self.known_scopes)} "
                "(the API's scopes are AUTHSERVER_KEY_SCOPES).",
                field="scope",
            )
        managing = sorted(MANAGEMENT_SCOPES.intersection(scope_list))
        if managing and not first_party:
            raise ClientError(
                f"The scope {managing[0]!r} manages this server: only a first-party client (--first-party, "
                "this server's own app) may hold it; a third-party app cannot be given it, not even by consent.",
                field="is_first_party",
            )
        if not pkce_required and public:
            raise ClientError(
                "A public client always uses PKCE; only a confidential client can be exempted (--no-pkce).",
                field="no_pkce",
            )
        audience_list = list(dict.fromkeys(a.strip() for a in audiences if a and a.strip()))
        for audience in audience_list:
            if len(audience) > 64 or self.registered(audience) is None:
                raise ClientError(
                    f"The audience {audience[:64]!r} is not a registered client: name a resource server's client_id "
                    "(registered with --introspect).",
                    field="audiences",
                )

        secret = None if method in ("none", "private_key_jwt") else random_token(32)
        row = OAuthClient(
            client_id=new_client_id(),
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
            require_par=require_par,
            require_dpop=require_dpop,
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
        self.audit.record(
            "client.create",
            actor=actor,
            target=f"client:{row.client_id}",
            details={
                "name": name,
                "public": public,
                "grants": grants,
                "first_party": first_party,
                "introspect": introspect,
                "pkce_required": pkce_required,
                "require_par": require_par,
                "require_dpop": require_dpop,
            },
        )
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
        return list(
            db.session.scalars(
                select(OAuthClient).where(OAuthClient.disabled_at.is_(None)).order_by(OAuthClient.name, OAuthClient.id)
            )
        )

    def rotate_secret(self, client_id: str, *, actor: str) -> str:
        """A new secret (shown once); the old one stops working at once, in every worker."""
        row = self.registered(client_id)
        if row is None:
            raise ClientError("There is no such client; it may have been deleted.")
        if row.token_endpoint_auth_method not in SECRET_METHODS:
            raise ClientError(
                "This client signs in without a secret (public or private_key_jwt): there is none to rotate."
            )
        secret = random_token(32)
        row.secret_hmac = keyed_hash(self.pepper, secret)
        if row.is_broker:
            row.secret_sealed = self.sealer.seal(secret.encode(), _secret_context(row.client_id))
        self.audit.record("client.secret_rotate", actor=actor, target=f"client:{row.client_id}")
        db.session.commit()
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
            update(OAuthToken)
            .where(OAuthToken.client_id == row.client_id, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        db.session.execute(delete(Consent).where(Consent.client_id == row.client_id))
        self.audit.record(
            "client.delete",
            actor=actor,
            target=f"client:{row.client_id}",
            details={"name": row.name, "revoked_tokens": revoked},
        )
        db.session.commit()
        return row

    def broker_secret(self, client_id: str) -> str | None:
        """The secret of a confidential broker client, for the broker's own code exchange."""
        row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if row is None or not row.is_broker or not row.secret_sealed:
            return None
        return self.sealer.unseal(row.secret_sealed, _secret_context(client_id)).decode()

    def sealed_columns(self) -> list[SealedColumn]:
        """Where broker clients' secrets are sealed."""
        return [SealedColumn(OAuthClient, "secret_sealed", lambda row: _secret_context(row.client_id))]

    def reseal_all(self, sealer) -> int:
        """Re-seal broker client secrets under `sealer` (for `master-key rotate`; current transaction, no commit)."""
        return sum(column.reseal(sealer) for column in self.sealed_columns())

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
