"""Authlib's grants with their storage hooks filled in, and stricter where its defaults are weak.

- PKCE: S256 only; required for public clients, and for all (the default,
  AUTHSERVER_PKCE_REQUIRED=all) but confidential clients registered with
  --no-pkce; a verifier for a code issued without a challenge is refused
  (Authlib's downgrade check).
- Codes: claimed by one conditional UPDATE; a replay revokes what was issued.
- Refresh tokens: rotated on every use; a reused one revokes its family.
- `request` / `request_uri` (request objects) are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceCodeGrant as AuthlibDeviceCodeGrant
from authlib.oidc.core import grants as oidc_grants
from authlib.oidc.core.errors import (
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..accounts.models import User
from ..extensions import db
from .clients import ASSERTION_ALGS, ClientError, append_query, client_key_set

if TYPE_CHECKING:
    from .server import OidcProvider

SECRET_AND_KEY_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def client_secret_basic(query_client, request):
    """Authlib's client_secret_basic, where a Basic credential whose base64 decodes to bytes that
    are not UTF-8 is no credential (Authlib lets the UnicodeDecodeError out: a 500)."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        return None


def _active_user(user_id: int | None) -> User | None:
    user = db.session.get(User, user_id) if user_id is not None else None
    return user if user is not None and not user.is_disabled else None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]

    @property
    def provider(self) -> OidcProvider:
        return self.server.provider

    def create_authorization_response(self, redirect_uri: str, grant_user):
        """As Authlib's, but the redirect URI is extended as written (custom schemes keep `:///`)."""
        if not grant_user:
            raise AccessDeniedError(redirect_uri=redirect_uri)
        self.request.user = grant_user
        code = self.generate_authorization_code()
        self.save_authorization_code(code, self.request)
        params = [("code", code)]
        if self.request.payload.state:
            params.append(("state", self.request.payload.state))
        return 302, "", [("Location", append_query(redirect_uri, params))]

    def save_authorization_code(self, code, request):
        data = request.payload.data
        self.provider.codes.save(
            code,
            client_id=request.client.client_id,
            user_id=request.user.id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            session=getattr(request, "sso_session", None),
            login_ticket=getattr(request, "login_ticket", None),
            claims=getattr(request, "claims_request", None),
            dpop_jkt=data.get("dpop_jkt"),
        )

    def query_authorization_code(self, code, client):
        # Create the signing key (if this is its first use) before the claim opens
        # its transaction: the claim and the tokens must commit together.
        self.provider.signing.active_key(client.id_token_signed_response_alg)
        return self.provider.codes.claim(code, client.client_id)

    def delete_authorization_code(self, authorization_code):
        """Nothing to delete: the claim marked the code used, and the row stays to catch replays."""

    def authenticate_user(self, authorization_code):
        return _active_user(authorization_code.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use

    def authenticate_refresh_token(self, refresh_token):
        return self.server.provider.tokens.rotate_refresh(refresh_token, self.request.client.client_id)

    def authenticate_user(self, refresh_token):
        return _active_user(refresh_token.row.user_id)

    def revoke_old_credential(self, refresh_token):
        """Nothing left to do: the rotation marked the old refresh token used when it was claimed."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AND_KEY_METHODS


class DeviceCodeGrant(AuthlibDeviceCodeGrant):
    """RFC 8628's token request: the poll is decided by one store call (devices.py), which
    claims an approved authorization in the transaction that saves the tokens."""

    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]

    def validate_token_request(self):
        device_code = self.request.payload.data.get("device_code")
        if not device_code:
            raise InvalidRequestError("Send the device_code from the device authorization response.")
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                "This client is not registered for the device grant: register it with --grant device_code."
            )
        # Create the signing key (if this is its first use) before the claim opens its transaction.
        self.server.provider.signing.active_key(client.id_token_signed_response_alg)
        provider = self.server.provider
        authorization = provider.devices.poll(device_code, client.client_id)
        user = _active_user(authorization.user_id)
        if user is None:
            raise InvalidGrantError("The account that approved this device is disabled or gone.")
        if provider.tokens.session_bound(authorization) and not provider.sessions.keep_alive(authorization.sid):
            # Without offline_access the device's tokens live with the session that approved it.
            raise InvalidGrantError("The session that approved this device has ended; approve it again, or ask "
                                    "for offline_access to stay signed in.")
        self.request.user = user
        self.request.client = client
        self.request.credential = authorization

    @hooked
    def create_token_response(self):
        authorization = self.request.credential
        client = self.request.client
        token = self.generate_token(user=self.request.user, scope=authorization.scope,
                                    include_refresh_token=client.check_grant_type("refresh_token"))
        self.request.device_authorization = authorization
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; `plain` (or no method, which means plain) is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self, required_for_all: bool):
        super().__init__(required=True)
        self.required_for_all = required_for_all

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge and not method:
            client = grant.request.client
            if client.is_public or (self.required_for_all and client.row.pkce_required):
                raise InvalidRequestError(
                    "PKCE is required for this client: send code_challenge with code_challenge_method=S256."
                )
            return
        if challenge and method != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported; plain PKCE is refused.")
        super().validate_code_challenge(grant, redirect_uri)


def refuse_request_objects(grant, redirect_uri):
    """Request objects are not supported (discovery says so); say it with the spec's error codes."""
    data = grant.request.payload.data
    if data.get("request"):
        raise RequestNotSupportedError()
    if data.get("request_uri"):
        raise RequestURINotSupportedError()


class RequestObjectRefusal:
    def __call__(self, grant):
        grant.register_hook("after_validate_authorization_request_payload", refuse_request_objects)


class OpenIDCode(oidc_grants.OpenIDCode):
    """ID tokens for the code grant: claims and signing come from the provider."""

    def __init__(self, provider: OidcProvider):
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce, request):
        return self.provider.codes.nonce_used(request.payload.client_id, nonce)

    def encode_id_token(self, token, request):
        return self.provider.id_token(token, request)


class OpenIDRefresh(oidc_grants.OpenIDToken):
    """A fresh ID token on refresh, for the same session and without a nonce (OIDC Core 12.2)."""

    def __init__(self, provider: OidcProvider):
        self.provider = provider

    def encode_id_token(self, token, request):
        return self.provider.id_token(token, request)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """private_key_jwt (RFC 7523): a client assertion signed with a key in the client's JWKS.

    Each `jti` is accepted once; the record is shared by every worker through the database.
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, provider: OidcProvider):
        super().__init__(validate_jti=True, leeway=30)
        self.provider = provider

    def get_audiences(self):
        return self.provider.assertion_audiences()

    def resolve_client_public_key(self, client):
        try:
            return client_key_set(client.row.jwks)
        except ClientError:  # a registration from before the checks
            return KeySet([])

    def process_assertion_claims(self, assertion, resolve_key):
        """As Authlib's, with the algorithms a client may sign with (no HMAC, no `none`)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except JoseError as exc:
            raise InvalidClientError(description="The client assertion is not signed with one of the client's "
                                                 f"registered keys ({', '.join(ASSERTION_ALGS)}).") from exc
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims, jti):
        return self.provider.clients.remember_assertion(claims["sub"], jti, self.provider.expiry_of(claims))
