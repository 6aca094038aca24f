"""OAuth clients, authorization codes, tokens, consents, signing keys and assertion ids."""

from __future__ import annotations

from datetime import datetime

from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import (
    JSON,
    Boolean,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UtcDateTime
from ..extensions import db


class OAuthClient(db.Model):
    """A registered relying party. Its secret is kept only as an HMAC under the pepper."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    # HMAC-SHA-256 under the server pepper: a fast keyed hash, since the secret
    # has 256 bits of entropy and the token endpoint checks it on every call.
    secret_hmac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Broker clients only: the broker redeems codes for them, so it must be able
    # to read the secret back; sealed under the master key, bound to the client_id.
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    is_trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Read by the broker: clients it may run the OAuth dance for, and old apps that drop `state`.
    is_broker: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_missing_state: Mapped[bool] = mapped_column(Boolean, default=False)
    # This server's own app: its tokens are accepted by this server's API (their audience says
    # so), it may hold scopes that manage this server, and it is never asked for consent.
    is_first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    # A resource server: may introspect tokens meant for it, and API keys (RFC 7662 §4).
    can_introspect: Mapped[bool] = mapped_column(Boolean, default=False)
    # False only for a client exempted at registration (AUTHSERVER_PKCE_REQUIRED=all otherwise binds it).
    pkce_required: Mapped[bool] = mapped_column(Boolean, default=True)
    # Authorization requests only by reference to a pushed request (RFC 9126 §6).
    require_par: Mapped[bool] = mapped_column(Boolean, default=False)
    # Tokens only for requests with a DPoP proof (RFC 9449): every access token sender-constrained.
    require_dpop: Mapped[bool] = mapped_column(Boolean, default=False)
    # Resource servers (their client_ids) this client's access tokens are also meant for.
    audiences: Mapped[list | None] = mapped_column(JSON, default=list, nullable=True)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(10), default="RS256")
    access_token_format: Mapped[str] = mapped_column(String(10), default="opaque")
    extra_claims: Mapped[dict] = mapped_column(JSON, default=dict)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    jwks: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Raised by the database on every UPDATE of the row (a trigger, migration 0017): workers
    # keep the rows they read, and the hot statements confirm a kept row by its revision
    # (clients.ClientRegistry).
    revision: Mapped[int] = mapped_column(Integer, server_default="1", server_onupdate=FetchedValue())


class AuthorizationCode(db.Model, AuthorizationCodeMixin):
    """A code between the authorization and token endpoints; redeemed once, atomically."""

    __tablename__ = "oauth_codes"
    __table_args__ = (Index("ix_oauth_codes_client_nonce", "client_id", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    nonce: Mapped[str | None] = mapped_column(String(512), nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime())
    acr: Mapped[str] = mapped_column(String(64), default="")
    amr: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The login ticket (its SHA-256) the authorization request presented: a ticket counts once.
    login_ticket: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    # The claims request parameter, as parsed: {"userinfo": [names], "id_token": [names]}.
    claims: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # RFC 9449 §10: the thumbprint of the DPoP key the token request must prove (dpop_jkt).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return int(self.auth_time.timestamp())

    def get_acr(self):
        return self.acr or None

    def get_amr(self):
        return list(self.amr or []) or None


class OAuthToken(db.Model):
    """One issuance: an access token and perhaps a refresh token, both stored as SHA-256.

    `family_id` ties every rotation of one refresh token chain together so a
    reused refresh token revokes them all; `code_id` ties the tokens to the
    code they were issued for, so a replayed code revokes them.
    """

    __tablename__ = "oauth_tokens"
    # The columns a client_credentials token leaves empty (no refresh token, code, user or
    # session) are indexed only where they are set (migration 0018): each index entry is work
    # for every INSERT, and a look-up by `column = value` uses the partial index all the same.
    __table_args__ = (
        Index("ix_oauth_tokens_family_id", "family_id"),
        *(Index(name, column, unique=unique, sqlite_where=text(f"{column} IS NOT NULL"),
                postgresql_where=text(f"{column} IS NOT NULL"))
          for name, column, unique in (("uq_oauth_tokens_refresh_token_hash", "refresh_token_hash", True),
                                       ("ix_oauth_tokens_code_id", "code_id", False),
                                       ("ix_oauth_tokens_user_id", "user_id", False),
                                       ("ix_oauth_tokens_sid", "sid", False))),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    family_id: Mapped[str] = mapped_column(String(64))
    code_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    # Space-separated: the client itself, the resource servers it named, this server's API (first-party).
    audience: Mapped[str] = mapped_column(String(1000), default="")
    token_format: Mapped[str] = mapped_column(String(10), default="opaque")
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acr: Mapped[str] = mapped_column(String(64), default="")
    amr: Mapped[list] = mapped_column(JSON, default=list)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The refresh family's absolute end: no rotation extends a family beyond it.
    family_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Set when the refresh token was exchanged for a new one; using it again is reuse.
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The claims request of the authorization (carried through refreshes): what userinfo adds.
    claims: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # RFC 9449: the access token is bound to this DPoP key (its JWK SHA-256 thumbprint), and a
    # public client's refresh token too; None: a bearer token.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Consent(db.Model):
    """The scopes a user granted a client; asked again only for scopes beyond these."""

    __tablename__ = "oauth_consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_oauth_consents_user_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SigningKey(db.Model):
    """A JWS key pair; the private half sealed under the master key."""

    __tablename__ = "oauth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10), index=True)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    private_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Signs from this time on (None: since it was created); published from its creation, so
    # that relying parties' cached JWKS know it before the first token it signs.
    activate_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # No longer signs from this time; still published until `unpublish_at`.
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    unpublish_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AssertionJti(db.Model):
    """`jti`s of private_key_jwt client assertions already seen, until they expire."""

    __tablename__ = "oauth_assertion_jtis"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class DeviceAuthorization(db.Model):
    """One device authorization request (RFC 8628): its device code (SHA-256) and user code
    (HMAC under the pepper), the user's decision, and the polling state; redeemed once."""

    __tablename__ = "oauth_device_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    # pending → approved | denied; approved → redeemed (one token response, by a conditional UPDATE)
    # or withdrawn (a password change, the app's access removed).
    status: Mapped[str] = mapped_column(String(10), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # The polling interval in seconds; raised by 5 at every slow_down (RFC 8628 §3.5).
    poll_interval: Mapped[int] = mapped_column(Integer, default=5)
    last_polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Who decided, and the session they decided in: the tokens carry its sid, auth_time, acr and amr.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_time: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acr: Mapped[str] = mapped_column(String(64), default="")
    amr: Mapped[list] = mapped_column(JSON, default=list)
    redeemed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class PushedRequest(db.Model):
    """A pushed authorization request (RFC 9126): the parameters a client sent to
    /oauth/par, found again by its request_uri (stored as SHA-256). Opened at the
    authorization endpoint within `expires_at`, then followed through login and consent;
    used once, by the authorization response it ends in."""

    __tablename__ = "oauth_pushed_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    # [[name, value], ...] in the order sent, client authentication left out.
    params: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The browser that opened it (SHA-256 of its cookie): only that browser follows it further.
    opener_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class DPoPProofJti(db.Model):
    """DPoP proofs already presented (RFC 9449 §11.1), until their `iat` leaves the accepted
    window: SHA-256 of the key's thumbprint and the proof's `jti`."""

    __tablename__ = "oauth_dpop_proofs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
