"""The Authlib authorization server, its endpoints and extensions, wired to our stores.

`OidcProvider` is the one object services.py builds: it owns the stores
(service.py), the signing keys (signing.py) and the Authlib server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode

from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import (
    AuthorizationServer as FlaskAuthorizationServer,
)
from authlib.integrations.flask_oauth2 import (
    ResourceProtector as FlaskResourceProtector,
)
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    InvalidScopeError,
    MissingAuthorizationError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.token_endpoint import TokenEndpoint
from authlib.oauth2.rfc6750 import (
    BearerTokenGenerator,
    BearerTokenValidator,
    InvalidTokenError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.core.errors import RequestNotSupportedError
from authlib.oidc.core.util import create_half_hash
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Response, json
from flask import request as flask_request
from joserfc import jws
from joserfc.errors import JoseError
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from ..accounts.acr import SUPPORTED as ACR_SUPPORTED
from ..accounts.service import AccountService, SessionService
from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import SecretSealer, random_token
from ..extensions import db
from ..identity import AuthenticationFailed, Via, current_identity
from ..settings import Settings
from ..throttle import Bucket, Throttle, TooManyAttempts
from . import dpop, grants, params
from .claims import CLAIMS_SUPPORTED, STANDARD_SCOPES, user_claims
from .clients import (
    ACCESS_TOKEN_SECONDS,
    ASSERTION_ALGS,
    AUTH_METHODS,
    DEVICE_CODE_GRANT,
    GRANT_TYPES,
    ID_TOKEN_SECONDS,
    REFRESH_TOKEN_SECONDS,
    ClientRegistry,
    append_query,
)
from .codes import CodeStore
from .consent import ConsentStore
from .devices import DeviceStore
from .logout import BackchannelLogout
from .pushed import CLIENT_AUTH_PARAMS, PUSHED_SECONDS, PushedRequests
from .signing import SUPPORTED_ALGS, SigningKeyService, Withdrawn
from .tokens import TokenStore

ENDPOINTS = {
    "authorization_endpoint": "/oauth/authorize",
    "token_endpoint": "/oauth/token",
    "userinfo_endpoint": "/oauth/userinfo",
    "jwks_uri": "/oauth/jwks",
    "introspection_endpoint": "/oauth/introspect",
    "revocation_endpoint": "/oauth/revoke",
    "end_session_endpoint": "/oauth/logout",
    "device_authorization_endpoint": "/oauth/device_authorization",
    "pushed_authorization_request_endpoint": "/oauth/par",
}
DEVICE_VERIFICATION_PATH = "/device"
SECRET_AND_KEY_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class TokenKind(Protocol):
    """One kind of credential the introspection endpoint can describe (OAuth tokens, API keys...).

    `find` answers an object with `is_expired()`, `is_revoked()`, `meant_for(client_id)` and
    `introspect(issuer) -> dict`, or None when the string is not of its kind. `address` is
    the introspecting caller's, for kinds whose guessing is throttled per address; a kind
    may raise TooManyAttempts. `caller` is the introspecting client: a kind whose statement
    also confirms the caller's kept row says so (`ClientRegistry.confirm`); OAuth tokens,
    the first kind, always do.
    """

    def find(self, value: str, hint: str | None, *, address: str, caller=None) -> object | None: ...


# -- token generation ----------------------------------------------------------


class OpaqueTokens(BearerTokenGenerator):
    def __init__(self):
        super().__init__(
            access_token_generator=lambda **_: random_token(32),
            refresh_token_generator=lambda **_: random_token(32),
            expires_generator=lambda client, grant_type: ACCESS_TOKEN_SECONDS,
        )


class JwtAccessTokens(JWTBearerTokenGenerator):
    """RFC 9068 access tokens, signed with the client's algorithm by our key service."""

    def __init__(self, provider: OidcProvider):
        super().__init__(
            issuer=provider.issuer,
            refresh_token_generator=lambda **_: random_token(32),
            expires_generator=lambda client, grant_type: ACCESS_TOKEN_SECONDS,
        )
        self.provider = provider

    def get_audiences(self, client, user, scope):
        audience = client.token_audience(self.provider.api_audience)
        return audience[0] if len(audience) == 1 else audience

    def access_token_generator(self, client, grant_type, user, scope):
        now = self.provider.now_ts()
        claims = {
            "iss": self.issuer,
            "exp": now + self._get_expires_in(client, grant_type),
            "aud": self.get_audiences(client, user, scope),
            "sub": user.sub if user is not None else client.get_client_id(),
            "client_id": client.get_client_id(),
            "iat": now,
            "jti": self.get_jti(client, grant_type, user, scope),
            "scope": scope,
        }
        jkt = dpop.binding.get()
        if jkt:
            claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1
        return self.provider.signing.sign(claims, client.id_token_signed_response_alg, typ="at+jwt")


class TokenGenerator:
    """Opaque by default; RFC 9068 JWTs for clients registered with that format."""

    def __init__(self, provider: OidcProvider):
        self.opaque = OpaqueTokens()
        self.jwt = JwtAccessTokens(provider)

    def __call__(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        generator = self.jwt if client.row.access_token_format == "jwt" else self.opaque
        return generator(grant_type=grant_type, client=client, user=user, scope=scope,
                         expires_in=expires_in, include_refresh_token=include_refresh_token)


# -- the server and its endpoints ----------------------------------------------


class Issuer(IssuerParameter):
    """RFC 9207: `iss` on every authorization response, errors included."""

    def __init__(self, issuer: str):
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer

    def add_issuer_parameter(self, authorization_server, response):
        if response.location:
            response.location = append_query(response.location, {"iss": self.issuer})


class ExactLocationResponse(Response):
    """Sends `Location` exactly as built.

    Werkzeug normalises Location through urlsplit/urlunsplit, which turns
    `app.immich:///oauth-callback` into `app.immich:/oauth-callback`. Our
    redirect locations are ASCII already: registered URIs are checked at
    registration and parameters are URL-encoded.
    """

    def get_wsgi_headers(self, environ):
        headers = super().get_wsgi_headers(environ)
        location = self.headers.get("Location")
        if location and location.isascii():
            headers["Location"] = location
        return headers


class _Parameters(FlaskOAuth2Payload):
    """The request's parameters, found once: Authlib reads `data` a dozen times a token request,
    and each read of werkzeug's `values` goes through its cached property in Python."""

    @functools.cached_property
    def data(self):
        return self._request.values


class OAuthRequest(FlaskOAuth2Request):
    def __init__(self, request):
        super().__init__(request)
        self.payload = _Parameters(request)


class AuthorizationServer(FlaskAuthorizationServer):
    def __init__(self, provider: OidcProvider):
        super().__init__()
        self.provider = provider
        self.register_token_generator("default", TokenGenerator(provider))

    def query_client(self, client_id):
        return self.provider.clients.get(client_id)

    def create_oauth2_request(self, request):
        # Authlib's Flask server always reads flask.request; the dispatch passes the request it built.
        return OAuthRequest(request if request is not None else flask_request)

    def handle_response(self, status_code, payload, headers):
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        return ExactLocationResponse(payload, status=status_code, headers=headers)

    def handle_error_response(self, request, error):
        """Errors for a verified redirect URI go back to it, extended as written (custom schemes intact)."""
        if error.redirect_uri and not error.redirect_fragment:
            return self.handle_response(302, "", [("Location", append_query(error.redirect_uri, error.get_body()))])
        return super().handle_error_response(request, error)

    def save_token(self, token, request):
        parent = request.refresh_token
        jkt = getattr(request, "dpop_jkt", None)
        if jkt:
            token["token_type"] = "DPoP"
        request.issued_token = self.provider.tokens.save(
            token,
            client=request.client,
            user=request.user,
            grant_type=request.payload.grant_type,
            code=request.authorization_code,
            parent=parent.row if parent is not None else None,
            device=getattr(request, "device_authorization", None),
            dpop_jkt=jkt,
        )


class TokenIntrospection(IntrospectionEndpoint):
    """RFC 7662 for confidential clients; more kinds of credential can be added (`kinds`)."""

    CLIENT_AUTH_METHODS = SECRET_AND_KEY_METHODS

    def __init__(self, provider: OidcProvider):
        super().__init__(provider.server)
        self.provider = provider

    def check_params(self, request, client):
        # An unknown token_type_hint is ignored, not an error (RFC 7662 section 2.1).
        self.token_value(request)

    @staticmethod
    def token_value(request) -> str:
        value = request.form.get("token")
        if not value or len(value) > 4096:
            raise InvalidRequestError("Send the token to introspect in the form field token.")
        return value

    def authenticate_token(self, request, client):
        """RFC 7662 §4: only a resource server (registered with --introspect) may ask, and it
        learns only about tokens meant for it; anything else is `{"active": false}`."""
        self.check_params(request, client)
        if not client.row.can_introspect:
            raise UnauthorizedClientError(
                "This client may not introspect tokens: register the resource server with --introspect."
            )
        address = request_address(request)
        for kind in self.provider.token_kinds:
            try:
                found = kind.find(request.form["token"], request.form.get("token_type_hint"), address=address,
                                  caller=client)
            except TooManyAttempts as exc:
                raise SlowDown(exc.retry_after) from None
            if found is not None:
                return found if found.meant_for(client.client_id) else None
        return None

    def introspect_token(self, token):
        return token.introspect(self.provider.issuer)


class SlowDown(OAuth2Error):
    """Too many failed guesses from this caller: 429 with Retry-After."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int, what: str = "Too many failed credential checks"):
        super().__init__(f"{what}; retry in {retry_after} s.")
        self.retry_after = retry_after

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


def request_address(request) -> str:
    """The caller's address of an Authlib request (Flask's or the dispatch's werkzeug request)."""
    raw = getattr(request, "_request", None)
    return (raw.remote_addr if raw is not None else None) or ""


class DeviceAuthorization(DeviceAuthorizationEndpoint):
    """RFC 8628 §3.1-3.2: a device asks for a device code and a user code. Client authentication
    as at the token endpoint (public clients with client_id alone); the client must be registered
    for the device grant. Requests are counted per address: each one writes a row."""

    CLIENT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]

    def __init__(self, provider: OidcProvider, throttle: Throttle):
        super().__init__(provider.server)
        self.provider = provider
        self.throttle = throttle

    def create_endpoint_response(self, request):
        client = self.authenticate_client(request)
        # Counted once the client has authenticated: failed authentications are the client
        # throttle's (`client_endpoint`), and must not use up what its address may start.
        try:
            self.throttle.consume(Bucket("device-start:address", request_address(request)))
        except TooManyAttempts as exc:
            raise SlowDown(exc.retry_after, "Too many device authorizations started from this address") from None
        if not client.check_grant_type(DEVICE_CODE_GRANT):
            raise UnauthorizedClientError(
                "This client is not registered for the device grant: register it with --grant device_code."
            )
        scope = client.get_allowed_scope(request.payload.scope)
        if scope is None:
            raise InvalidScopeError("The scope asks for more than the client is registered for.")
        started = self.provider.devices.start(client.client_id, scope)
        uri = self.provider.base + DEVICE_VERIFICATION_PATH
        body = {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": uri,
            "verification_uri_complete": append_query(uri, {"user_code": started.user_code}),
            "expires_in": started.expires_in,
            "interval": started.interval,
        }
        return 200, body, default_json_headers


class PushedAuthorization(TokenEndpoint):
    """RFC 9126: an authorization request pushed over the back channel by an authenticated client
    (public clients with client_id alone), checked now as the authorization endpoint would check
    it, errors answered here as JSON; the answer is a single-use request_uri for the browser."""

    ENDPOINT_NAME = "pushed_authorization"
    CLIENT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]

    def __init__(self, provider: OidcProvider, throttle: Throttle):
        super().__init__(provider.server)
        self.provider = provider
        self.throttle = throttle

    def create_endpoint_request(self, request):
        return self.server.create_oauth2_request(request)

    def create_endpoint_response(self, request):
        try:
            self.throttle.consume(Bucket("par:address", request_address(request)))
        except TooManyAttempts as exc:
            raise SlowDown(exc.retry_after) from None
        client = self.authenticate_endpoint_client(request)
        form = request.form
        if "request_uri" in form:
            raise InvalidRequestError("A pushed request cannot itself name a request_uri (RFC 9126 section 2.1).")
        if "request" in form:
            raise RequestNotSupportedError()
        if form.get("client_id", client.client_id) != client.client_id:
            raise InvalidRequestError("The form's client_id names another client than the one that authenticated.")
        pushed = [(k, v) for k, v in form.items(multi=True) if k not in CLIENT_AUTH_PARAMS and k != "client_id"]
        pushed.insert(0, ("client_id", client.client_id))
        proof = self.provider.dpop.verify(request.headers, self.provider.endpoint_resource(
            "pushed_authorization_request_endpoint"))
        if proof is not None:
            # RFC 9449 §10.1: a proof at the push binds the code as dpop_jkt would.
            named = form.get("dpop_jkt")
            if named is not None and named != proof.jkt:
                raise dpop.InvalidProof("dpop_jkt names another key than the one that signed the DPoP proof.")
            if named is None:
                pushed.append(("dpop_jkt", proof.jkt))
        check_pushed(self.server, pushed)
        uri = self.provider.pushed.push(client.client_id, pushed)
        return 201, {"request_uri": uri, "expires_in": PUSHED_SECONDS}, [*default_json_headers]


def check_pushed(server: AuthorizationServer, pushed: list[tuple[str, str]]) -> None:
    """Everything the authorization endpoint checks before it asks anyone to log in: client,
    redirect URI (exact match), response type, scope, PKCE, response mode, max_age, claims.
    An error is the client's to see here, never a redirect."""
    as_authorize = Request(EnvironBuilder(method="GET", path=ENDPOINTS["authorization_endpoint"],
                                          query_string=urlencode(pushed)).get_environ())
    oauth_request = server.create_oauth2_request(as_authorize)
    try:
        grant = server.get_authorization_grant(oauth_request)
        grant.validate_no_multiple_request_parameter(oauth_request)
        grant.validate_authorization_request()
        values = as_authorize.args
        params.response_mode(values)
        params.max_age(values)
        params.claims_request(values, grant.client)
        params.dpop_jkt(values)
        params.lengths(values)
    except OAuth2Error as error:
        error.redirect_uri = None
        raise
    except ValueError:
        # Authlib will not quote `\`, `"`, NUL or non-ASCII in an error description (as at the
        # authorization endpoint): the request named a bad redirect_uri or response_type.
        raise InvalidRequestError(
            "A parameter (redirect_uri or response_type) contains characters that are not allowed."
        ) from None


class TokenRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = SECRET_AND_KEY_METHODS + ["none"]

    def __init__(self, provider: OidcProvider):
        super().__init__(provider.server)
        self.provider = provider

    def check_params(self, request, client):
        TokenIntrospection.token_value(request)

    def query_token(self, token_string, token_type_hint):
        return self.provider.tokens.find(token_string, token_type_hint)

    def revoke_token(self, token, request):
        self.provider.tokens.revoke(token, actor=f"client:{request.client.client_id}")


class AccessTokenValidator(BearerTokenValidator):
    """`Authorization: Bearer` (or the form's access_token) at userinfo: a DPoP-bound token is refused."""

    def __init__(self, provider: OidcProvider):
        super().__init__(realm="authserver")
        self.provider = provider

    def authenticate_token(self, token_string):
        return self.provider.tokens.find_bearer(token_string)

    def validate_token(self, token, scopes, request):
        super().validate_token(token, scopes, request)
        self.check_binding(token, request)

    def check_binding(self, token, request) -> None:
        _, _, value = (request.headers.get("Authorization") or "").partition(" ")
        resource = dpop.Resource(request.method, self.provider.base + ENDPOINTS["userinfo_endpoint"])
        try:
            self.provider.dpop.check_presented(request.headers, resource, self.TOKEN_TYPE, value.strip(),
                                               token.row.dpop_jkt)
        except dpop.Refused as refused:
            raise TokenRefused(refused) from None


class DPoPAccessTokenValidator(AccessTokenValidator):
    """`Authorization: DPoP` with a proof by the key the token is bound to (RFC 9449 §7)."""

    TOKEN_TYPE = "dpop"


class TokenRefused(OAuth2Error):
    """An access token refused for how it was presented: 401 with the DPoP challenge."""

    status_code = 401

    def __init__(self, refused: dpop.Refused):
        super().__init__(refused.description)
        self.error = refused.error
        self.challenge = refused.challenge

    def get_headers(self):
        return [*super().get_headers(), ("WWW-Authenticate", self.challenge or 'Bearer realm="authserver"')]


class ResourceProtector(FlaskResourceProtector):
    """Bearer tokens in the Authorization header, or as `access_token` in a form body (RFC 6750 2.2)."""

    def parse_request_authorization(self, request):
        try:
            return super().parse_request_authorization(request)
        except MissingAuthorizationError:
            value = flask_request.form.get("access_token") if flask_request.method == "POST" else None
            if not value:
                raise
            return self.get_token_validator("bearer"), value


class UserInfo(UserInfoEndpoint):
    def __init__(self, provider: OidcProvider):
        super().__init__(provider.server, provider.resource_protector)
        self.provider = provider

    def __call__(self, request):
        token = self.resource_protector.acquire_token("openid")
        client, user = token.get_client(), token.get_user()
        if client is None or user is None:
            raise InvalidTokenError(realm="authserver")
        requested = (token.row.claims or {}).get("userinfo", ())
        return 200, user_claims(user, token.scope, client.row.extra_claims, requested), default_json_headers


class EndSession(EndSessionEndpoint):
    """RP-initiated logout. It only ever ends the session of the browser that asks (its cookie),
    and without confirmation only when the ID token hint names that session's user and is
    still valid; an old or stolen hint identifies the client, nothing more."""

    def __init__(self, provider: OidcProvider):
        super().__init__(provider.server)
        self.provider = provider

    def get_server_jwks(self):
        return self.provider.signing.jwks()

    def _validate_id_token_hint(self, id_token_hint: str) -> dict:
        try:
            return super()._validate_id_token_hint(id_token_hint)
        except InvalidRequestError:
            raise InvalidRequestError(
                "The id_token_hint is not an ID token this server signed (it is malformed, altered or signed "
                "with a key this server no longer publishes): the app sent a wrong value."
            ) from None

    def _is_valid_post_logout_redirect_uri(self, client, post_logout_redirect_uri):
        return client.check_post_logout_redirect_uri(post_logout_redirect_uri)

    def validate_request(self, request):
        validated = super().validate_request(request)
        if validated.redirect_uri:
            # Rebuilt from the registered URI: Authlib's URL joining mangles custom schemes.
            data = request.payload.data
            state = data.get("state")
            validated.redirect_uri = append_query(data["post_logout_redirect_uri"], {"state": state} if state else {})
        validated.session = self._browser_session()
        claims = validated.id_token_claims
        exp = claims.get("exp") if claims else None
        # The hint names the signed-in user, is unexpired, and was issued in this very session (its
        # sid): an ID token kept from an earlier sign-in only names the user, and the user is asked.
        validated.hint_current = bool(
            claims and validated.session is not None and claims.get("sub") == validated.session.user.sub
            and isinstance(exp, (int, float)) and exp > self.provider.now_ts()
            and claims.get("sid") == validated.session.id
        )
        return validated

    @staticmethod
    def _browser_session():
        try:
            identity = current_identity()
        except AuthenticationFailed:
            return None
        return identity.session if identity is not None and identity.via == Via.SESSION else None

    def get_algorithms(self):
        return list(SUPPORTED_ALGS)

    def end_session(self, end_session_request):
        """End this browser's SSO session, whoever the hint names; never another one."""
        record = end_session_request.session
        if record is not None:
            self.provider.sessions.revoke(record)


# -- client-authenticated endpoints, one way for every caller ------------------------


def token_response(server: AuthorizationServer, oauth_request) -> tuple[int, object, list]:
    """Authlib's token endpoint as a (status, body, headers) tuple: the one sequence the token
    route (and the dispatch) and the broker run."""
    provider = server.provider
    # The proof first: it is recorded (used) before this request's transaction writes anything.
    proof = provider.dpop.verify(oauth_request.headers, provider.endpoint_resource("token_endpoint"),
                                 require_nonce=True)

    def grant_response():
        grant = server.get_token_grant(oauth_request)
        grant.validate_token_request()
        oauth_request.dpop_jkt = provider.token_binding(grant.request, proof)
        bound = dpop.binding.set(oauth_request.dpop_jkt)
        try:
            return grant.create_token_response()
        finally:
            dpop.binding.reset(bound)

    if oauth_request.payload.grant_type == "client_credentials" and may_keep_client(oauth_request.payload.data):
        # Decided on the worker's kept client row; the token INSERT confirms it (clients.py).
        status, body, headers = provider.clients.decide(grant_response)
    else:
        status, body, headers = grant_response()
    if proof is not None:
        headers = [*headers, ("DPoP-Nonce", provider.dpop.nonce())]
    return status, body, headers


def may_keep_client(parameters) -> bool:
    """May a request with these parameters be decided on a kept client row? Not with a client
    assertion: its `jti` is recorded before the statement that confirms the row, so it could
    not be checked a second time on a fresh row."""
    return "client_assertion" not in parameters


CLIENT_AUTH_FAILED = (
    "Client authentication failed: send the client_id with its secret (HTTP Basic, or client_id and "
    "client_secret in the form), or the signed assertion it was registered for."
)
CLIENT_AUTH_CHALLENGE = 'Basic realm="authserver", error="invalid_client"'


def client_endpoint(req, run: Callable[[], tuple[int, object, list]], *, throttle: Throttle,
                    audit: AuditLog) -> tuple[int, object, list]:
    """Run a client-authenticated endpoint to its answer, errors included (a tuple).

    A failed client authentication is audited and counted per address; past the address's
    limit it is answered 429. A client that authenticates is never refused for what others
    did from its address. `req` is the werkzeug request (Flask's or the dispatch's).
    """
    refused = _query_parameters(req) or _repeated_parameter(req) or _mixed_client_authentication(req)
    if refused is not None:
        return 400, {"error": "invalid_request", "error_description": refused}, list(default_json_headers)
    if _malformed_basic(req):
        # A failed client authentication, never handed to Authlib: it would read what it can of
        # the header (base64 decoding skips what is not base64) and try that, and then the form.
        status, body, headers = 401, {"error": "invalid_client"}, []
    else:
        try:
            status, body, headers = run()
        except OAuth2Error as error:
            status, body, headers = error()
    if status >= 400:
        db.session.rollback()
    if not (isinstance(body, dict) and body.get("error") == "invalid_client"):
        return status, body, headers
    # One answer whatever went wrong, status and headers included: it does not tell whether the
    # client_id exists (Authlib answers an unknown one 400, or names it in WWW-Authenticate),
    # nor print Authlib's Python list of methods.
    body = {"error": "invalid_client", "error_description": CLIENT_AUTH_FAILED}
    status, headers = 401, [*default_json_headers, ("WWW-Authenticate", CLIENT_AUTH_CHALLENGE)]
    bucket = Bucket("client:address", req.remote_addr or "")
    claimed = _claimed_client_id(req)
    if throttle.fail(bucket):
        audit.record("client.auth_failed", actor=f"client:{claimed}", outcome="failure",
                     details={"endpoint": req.path}, commit=True)
        return status, body, headers
    retry = throttle.retry_after(bucket)
    audit.record("client.throttled", actor=f"client:{claimed}", outcome="failure",
                 details={"endpoint": req.path, "retry_after": retry}, commit=True)
    body = {"error": "slow_down", "error_description": f"Too many failed client authentications; retry in {retry} s."}
    return 429, body, [*default_json_headers, ("Retry-After", str(retry))]


def _query_parameters(req) -> str | None:
    """RFC 6749 §3.2 (and the endpoints built on it): parameters travel in the form body. Authlib
    reads the query string as well, where it wins over the body unseen by the repeat check."""
    if req.query_string:
        return ("Send the parameters in the form body, not in the URL's query string "
                "(RFC 6749 section 3.2).")
    return None


def _repeated_parameter(req) -> str | None:
    """RFC 6749 §3.1: a parameter is sent at most once; say which one came twice, or None."""
    for name, values in req.form.lists():
        if len(values) > 1:
            shown = name[:40] if name.isprintable() else "(unprintable)"
            return f'The parameter "{shown}" is sent more than once; send each parameter once (RFC 6749 section 3.1).'
    return None


ONE_METHOD = ("Send the client's credentials one way only: HTTP Basic, client_id and client_secret in the "
              "form, or a client assertion, not two of them (RFC 6749 section 2.3).")


def _mixed_client_authentication(req) -> str | None:
    """Why the request uses more than one client authentication method (RFC 6749 §2.3: one per
    request), or None. HTTP Basic with form credentials as well, a form secret beside a client
    assertion, or a client_id that names another client than the credentials (the Basic user
    name, the assertion's subject: RFC 7523 §3), is refused rather than answered as one of them."""
    form = req.form
    named = form.get("client_id")
    auth = req.authorization
    if auth is not None and auth.type == "basic":
        if "client_secret" in form or "client_assertion" in form:
            return ONE_METHOD
        if named is not None and named != auth.username:
            return "The form's client_id names another client than the HTTP Basic credentials; send one client's."
        return None
    if "client_assertion" not in form:
        return None
    if "client_secret" in form:
        return ONE_METHOD
    if named is not None and named != _assertion_subject(form["client_assertion"]):
        return "The form's client_id names another client than the client assertion's subject; send one client's."
    return None


def _malformed_basic(req) -> bool:
    """An `Authorization: Basic …` header werkzeug reads no credentials from: not base64 of UTF-8
    `client_id:secret`, two credentials in one header, or no space after the scheme."""
    sent = req.headers.get("Authorization", "").split(None, 1)
    if not sent or sent[0].lower() != "basic":
        return False
    auth = req.authorization
    return auth is None or auth.type != "basic"


def _assertion_subject(assertion: str) -> str | None:
    """The `sub` a client assertion claims, unverified (only compared with the form's client_id;
    the assertion itself is verified by client authentication), or None if it has none."""
    try:
        claims = json.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None


def _claimed_client_id(req) -> str:
    """The client_id a failed request named (Basic user name or form field), for the audit log."""
    auth = req.authorization
    claimed = (auth.username if auth is not None and auth.type == "basic" else None) or req.form.get("client_id")
    text = str(claimed or "-")[:64]
    return text if text.isprintable() else "(unprintable)"


# -- the provider --------------------------------------------------------------


class OidcProvider:
    """Everything the OIDC views need, built once per app by services.py."""

    def __init__(self, settings: Settings, clock: Clock, sealer: SecretSealer, audit: AuditLog,
                 sessions: SessionService, accounts: AccountService, throttle: Throttle):
        self.settings = settings
        self.sessions = sessions
        self.accounts = accounts
        self.clock = clock
        self.audit = audit
        self.issuer = settings.issuer
        self.base = settings.issuer.rstrip("/")
        # The audience of this server's own API (/api/*, forward-auth): only first-party tokens carry it.
        self.api_audience = self.base + "/api"
        longest = max(ACCESS_TOKEN_SECONDS, ID_TOKEN_SECONDS)
        self.signing = SigningKeyService(sealer, clock, publish_after_retire=timedelta(seconds=longest + 300))
        self.clients = ClientRegistry(settings.pepper, sealer, audit, clock, api_scopes=settings.key_scopes)
        self.tokens = TokenStore(clock, audit, self.clients, api_audience=self.api_audience, sessions=sessions,
                                 refresh_idle_seconds=settings.refresh_idle_seconds,
                                 refresh_absolute_seconds=settings.refresh_absolute_seconds)
        self.codes = CodeStore(clock, audit, self.tokens)
        self.consents = ConsentStore(clock, audit, self.tokens)
        self.devices = DeviceStore(settings.pepper, clock, audit)
        self.pushed = PushedRequests(clock)
        self.dpop = dpop.DPoP(settings.secret_key, clock)
        self.consents.on_revoke(self._access_withdrawn)
        self.consents.on_revoke(self._consent_revoked)
        self.backchannel = BackchannelLogout(settings.issuer, clock, self.signing, self.tokens, self.clients)
        sessions.on_end(self.backchannel.sessions_ended)
        sessions.on_end(self._sessions_ended)
        sessions.on_replace(self.tokens.move_session)
        accounts.on_password_change(self._password_changed)
        # Introspection answers for the first kind that recognises the string.
        self.token_kinds: list[TokenKind] = [self.tokens]

        self.server = AuthorizationServer(self)
        self.server.register_client_auth_method("private_key_jwt", grants.PrivateKeyJwt(self))
        self.server.register_client_auth_method("client_secret_basic", grants.client_secret_basic)
        self.issuer_parameter = Issuer(settings.issuer)
        self.server.register_extension(self.issuer_parameter)
        pkce = grants.S256CodeChallenge(required_for_all=settings.pkce_required == "all")
        self.server.register_grant(
            grants.AuthorizationCodeGrant, [pkce, grants.OpenIDCode(self), grants.RequestObjectRefusal()]
        )
        self.server.register_grant(grants.RefreshTokenGrant, [grants.OpenIDRefresh(self)])
        self.server.register_grant(grants.ClientCredentialsGrant)
        self.server.register_grant(grants.DeviceCodeGrant, [grants.OpenIDRefresh(self)])
        self.resource_protector = ResourceProtector()
        self.resource_protector.register_token_validator(AccessTokenValidator(self))
        self.resource_protector.register_token_validator(DPoPAccessTokenValidator(self))
        self.introspection = TokenIntrospection(self)
        self.server.register_endpoint(self.introspection)
        self.revocation = TokenRevocation(self)
        self.server.register_endpoint(self.revocation)
        self.device_authorization = DeviceAuthorization(self, throttle)
        self.server.register_endpoint(self.device_authorization)
        self.pushed_authorization = PushedAuthorization(self, throttle)
        self.server.register_endpoint(self.pushed_authorization)
        self.server.register_endpoint(UserInfo(self))
        self.server.register_endpoint(EndSession(self))
        self._metadata = self._build_metadata()

    def withdraw_signing_key(self, kid: str, *, actor: str) -> tuple[Withdrawn, int]:
        """A compromised key out of JWKS and out of service at once, and the JWT access tokens it
        may have signed revoked; (what was withdrawn, how many tokens were revoked)."""
        withdrawn = self.signing.withdraw(kid)
        revoked = self.tokens.revoke_signed_with(withdrawn.alg, withdrawn.signed_from, withdrawn.signed_until)
        self.audit.record("signing_key.withdraw", actor=actor, target=f"signing_key:{kid}",
                          details={"alg": withdrawn.alg, "revoked_tokens": revoked}, commit=True)
        return withdrawn, revoked

    def start_afresh(self, *, actor: str) -> dict[str, int | list[str]]:
        """After a restore from a backup: every token revoked, and new signing keys at once with
        every older one withdrawn, so nothing issued before the restore verifies any more."""
        revoked = self.tokens.revoke_everything()
        fresh = {r.kid for r in self.signing.rotate(now=True)}
        withdrawn = [key["kid"] for key in self.signing.jwks()["keys"] if key["kid"] not in fresh]
        for kid in withdrawn:
            self.signing.withdraw(kid)
        self.audit.record("oauth.start_afresh", actor=actor, target="tokens",
                          details={"revoked_tokens": revoked, "withdrawn_keys": withdrawn}, commit=True)
        return {"revoked_tokens": revoked, "withdrawn_keys": withdrawn, "signing_keys": sorted(fresh)}

    def _sessions_ended(self, records) -> None:
        """Tokens issued under an SSO session without offline_access end with it."""
        revoked = self.tokens.revoke_for_sessions([record.id for record in records])
        if revoked:
            self.audit.record("oauth.tokens_revoked", actor="system", target=f"user:{records[0].user.username}",
                              details={"tokens": revoked, "reason": "session_ended"})
        db.session.commit()

    def _access_withdrawn(self, user_id: int, client_id: str | None = None) -> None:
        """What was granted but not yet exchanged for tokens ends too: unredeemed codes and device
        approvals (in the caller's transaction)."""
        self.codes.expire_for(user_id, client_id)
        self.devices.withdraw(user_id, client_id)

    def _consent_revoked(self, user_id: int, client_id: str) -> None:
        """The app is signed out of the user's sessions too (back-channel logout), not only its tokens."""
        user = self.accounts.get(user_id)
        if user is not None:
            self.backchannel.access_withdrawn(user, client_id)

    def _password_changed(self, user) -> None:
        # Approvals given before the change (perhaps by whoever knew the old password) end.
        self._access_withdrawn(user.id)
        db.session.commit()
        if self.settings.keep_refresh_on_password_change:
            return
        revoked = self.tokens.revoke_for_user(user.id, refresh_only=True)
        self.audit.record("oauth.tokens_revoked", actor="system", target=f"user:{user.username}",
                          details={"tokens": revoked, "reason": "password_change"})
        db.session.commit()

    def endpoint_resource(self, endpoint: str, method: str = "POST") -> dpop.Resource:
        """One of this server's endpoints as a DPoP proof names it (its URL in discovery)."""
        return dpop.Resource(method, self.base + ENDPOINTS[endpoint])

    def token_binding(self, request, proof: dpop.Proof | None) -> str | None:
        """The key the tokens of this token request are bound to (RFC 9449 §5), or None for bearer
        tokens; InvalidProof when the client, the code or the refresh token wants a proof by a key
        this request does not prove."""
        jkt = proof.jkt if proof is not None else None
        client = request.client
        if client.row.require_dpop and jkt is None:
            raise dpop.InvalidProof("This client is registered to use DPoP: send a DPoP proof with every token "
                                    "request.")
        code = request.authorization_code
        if code is not None and code.dpop_jkt and code.dpop_jkt != jkt:
            raise dpop.InvalidProof("The authorization request named a DPoP key (dpop_jkt): sign this request's DPoP "
                                    "proof with that key.")
        parent = request.refresh_token
        if parent is not None and client.is_public and parent.row.dpop_jkt and parent.row.dpop_jkt != jkt:
            # A public client's refresh token is bound to its key (RFC 9449 §5): a stolen one is useless.
            raise dpop.InvalidProof("This refresh token is bound to a DPoP key: sign the DPoP proof with that key.")
        return jkt

    def now_ts(self) -> int:
        return int(self.clock.now().timestamp())

    def expiry_of(self, claims) -> datetime:
        exp = claims.get("exp")
        given = isinstance(exp, (int, float)) and not isinstance(exp, bool)
        seconds = exp if given else self.now_ts() + REFRESH_TOKEN_SECONDS
        return datetime.fromtimestamp(min(seconds, 4102444800), tz=UTC)

    def assertion_audiences(self) -> list[str]:
        """What a client assertion may name as its audience: the issuer or any endpoint that takes
        one (RFC 7523 §3; RFC 9126 §2 asks for the PAR endpoint's URL to be accepted too)."""
        return [self.issuer, *(self.base + ENDPOINTS[name] for name in (
            "token_endpoint", "introspection_endpoint", "revocation_endpoint",
            "pushed_authorization_request_endpoint", "device_authorization_endpoint"))]

    def id_token(self, token: dict, request) -> str:
        """OIDC Core 2: the ID token of one issuance; `nonce` only when the code carried one."""
        client, user, issued = request.client, request.user, request.issued_token
        alg = client.id_token_signed_response_alg
        now = self.now_ts()
        requested = (issued.claims or {}).get("id_token", ())
        claims = dict(user_claims(user, token.get("scope"), client.row.extra_claims, requested))
        claims.update(
            iss=self.issuer,
            sub=user.sub,
            aud=client.client_id,
            azp=client.client_id,
            iat=now,
            exp=now + ID_TOKEN_SECONDS,
        )
        if issued.auth_time is not None:
            claims["auth_time"] = int(issued.auth_time.timestamp())
        code = request.authorization_code
        if code is not None and code.nonce:
            claims["nonce"] = code.nonce
        if issued.acr:
            claims["acr"] = issued.acr
        if issued.amr:
            claims["amr"] = list(issued.amr)
        if issued.sid:
            claims["sid"] = issued.sid
        at_hash = create_half_hash(token["access_token"], alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
        return self.signing.sign(claims, alg)

    def metadata(self) -> dict:
        return self._metadata

    def _build_metadata(self) -> dict:
        endpoints = {name: self.base + path for name, path in ENDPOINTS.items()}
        return {
            "issuer": self.issuer,
            **endpoints,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": list(GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "introspection_endpoint_auth_methods_supported": SECRET_AND_KEY_METHODS,
            "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(STANDARD_SCOPES),
            "claims_supported": list(CLAIMS_SUPPORTED),
            "claims_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "require_pushed_authorization_requests": self.settings.require_par,
            "dpop_signing_alg_values_supported": list(dpop.DPOP_ALGS),
            "prompt_values_supported": ["none", "login", "consent"],
            "acr_values_supported": list(ACR_SUPPORTED),
            "authorization_response_iss_parameter_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "frontchannel_logout_supported": False,
        }
