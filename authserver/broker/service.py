"""The broker: runs the OAuth dance for thin clients (old mobile apps, scripts).

A thin client asks for a login transaction, opens the authorization URL it is
given, and posts back what its redirect URI received. The broker holds the
`state`, the `nonce` and the PKCE verifier, redeems the code in-process
through the provider's own Authlib server (with the held secret for a
confidential client), checks the ID token against this server's JWKS and
answers the tokens and the user.

Every failure is a `BrokerError` whose description names the cause and the
fix (docs/broker-errors.md lists them all).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select, update

from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import SecretSealer, keyed_hash, random_token, same
from ..errors import DomainError
from ..extensions import db
from ..oidc.clients import RegisteredClient
from ..oidc.server import ENDPOINTS, OidcProvider, token_response
from ..sealing import SealedColumn
from ..throttle import Bucket, Throttle
from .models import BrokerTransaction

log = logging.getLogger("authserver.broker")

TRANSACTION_SECONDS = 600
# Rows stay this long after they expire, so a late callback is told "expired", not "unknown".
KEEP_EXPIRED = timedelta(days=1)
BAD_HANDLES = "broker:address"
STARTS = "broker-start:address"

# RFC 7636 4.2: an S256 challenge is the unpadded base64url SHA-256 of the verifier: 43 characters.
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# RFC 6749 appendix A.5: state is visible ASCII.
_STATE = re.compile(r"^[\x20-\x7e]{1,512}$")
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,64}$")


# -- errors --------------------------------------------------------------------


class BrokerError(DomainError):
    """A broker failure: an error code and one sentence naming the cause and the fix (HTTP 400)."""

    error = "invalid_request"
    description = "The broker request is not valid; check its fields."

    def __init__(self, description: str | None = None):
        super().__init__(description if description is not None else self.description)


class BrokerStateMissing(BrokerError):
    error = "state_missing"
    description = (
        "OAuth state is missing from the callback: the client did not pass back the state it was given; "
        "update the app to a version that returns the state, or ask the server admin to allow this app's "
        "older versions (client setting --allow-missing-state)."
    )


class BrokerStateUnknown(BrokerError):
    error = "state_unknown"
    description = (
        "OAuth state in the callback was never issued by this server: the callback belongs to another login "
        "server or was altered on the way; open exactly the authorization_url this server returned and sign in again."
    )


class BrokerStateExpired(BrokerError):
    error = "state_expired"
    description = (
        "OAuth state has expired: the sign-in took longer than 10 minutes; start the sign-in again from the app "
        "and finish it within 10 minutes."
    )


class BrokerStateUsed(BrokerError):
    error = "state_used"
    description = (
        "OAuth state was already used: this sign-in was completed before (the callback was sent twice); "
        "if the app is not signed in, start a new sign-in from the app."
    )


class BrokerStateMismatch(BrokerError):
    error = "state_mismatch"
    description = (
        "OAuth state in the callback belongs to a different sign-in than this transaction: the app mixed up two "
        "sign-ins; close other sign-in windows and start the sign-in again from the app."
    )


class BrokerTransactionUnknown(BrokerError):
    error = "transaction_unknown"
    description = (
        "The transaction handle is not known to this server: it is mistyped, cut short, from another server or "
        "more than a day old; start the sign-in again and send back the exact handle "
        "POST /api/oauth/authorize returned."
    )


class BrokerTransactionMissing(BrokerError):
    error = "transaction_missing"
    description = (
        'The callback carries no transaction handle: the app did not send back the "transaction" value '
        "POST /api/oauth/authorize gave it; update the app, or send that handle with the callback."
    )


class BrokerCodeMissing(BrokerError):
    error = "code_missing"
    description = (
        "The callback carries neither an authorization code nor an error: it is not the redirect the app "
        "received from the login page; send the full URL the app was redirected to (or its code and state)."
    )


class BrokerCodeVerifierMissing(BrokerError):
    error = "code_verifier_missing"
    description = (
        "The callback carries no code_verifier: this sign-in was started with the app's own code_challenge; "
        "send the code_verifier the app made that challenge from."
    )


class BrokerCodeRejected(BrokerError):
    error = "code_rejected"

    def __init__(self, provider_error: str, provider_description: str | None):
        detail = f"{provider_error}: {provider_description}" if provider_description else provider_error
        super().__init__(
            f"The login server rejected the authorization code ({detail.rstrip('.')}): a code works once, within "
            "60 seconds, and only with the redirect URI and PKCE verifier of its own sign-in; start the sign-in "
            "again from the app."
        )


class BrokerNonceMismatch(BrokerError):
    error = "nonce_mismatch"
    description = (
        "The ID token's nonce does not match this sign-in: the login was started from a different or altered "
        "authorization URL; open exactly the authorization_url this transaction returned and sign in again."
    )


class BrokerIdTokenInvalid(BrokerError):
    error = "id_token_invalid"

    def __init__(self, reason: str):
        super().__init__(
            f"The ID token failed validation ({reason}): the token did not come from this server's current "
            "signing keys or names another issuer or client; sign in again, and if it persists ask the server "
            "admin to check AUTHSERVER_ISSUER and the signing keys."
        )


class BrokerIssuerMismatch(BrokerError):
    error = "issuer_mismatch"
    description = (
        "The callback was issued by another login server (its iss parameter names a different issuer): the app "
        "opened a different provider's login page; open the authorization_url this server returned."
    )


class BrokerUnknownClient(BrokerError):
    error = "invalid_client"
    description = (
        "No enabled client with this client_id is registered here: the app's client_id setting is wrong or the "
        "client was disabled; copy the client_id from `authserver client create` into the app."
    )


class BrokerClientNotAllowed(BrokerError):
    error = "unauthorized_client"
    description = (
        "This client is not registered for the broker: the server only runs the sign-in for clients created with "
        "--broker; register the client with --broker, or let the app do the OAuth exchange itself."
    )


class BrokerRedirectUriMismatch(BrokerError):
    error = "invalid_redirect_uri"
    description = (
        "The redirect_uri is not registered for this client: it must match a registered one exactly; register it "
        "with --redirect-uri or correct the app's setting."
    )


class BrokerInvalidScope(BrokerError):
    error = "invalid_scope"


class BrokerProviderError(BrokerError):
    """The login server's own error in the callback URL, passed through with its description."""

    FIXES: ClassVar[dict[str, str]] = {
        "access_denied": "the sign-in was cancelled or consent was refused; start the sign-in again and choose Allow.",
        "login_required": "the user is not signed in and the app asked not to show the login page; start the "
        "sign-in again without prompt=none.",
        "consent_required": "the app asked not to show the consent page; start the sign-in again without prompt=none.",
        "interaction_required": "the login page needs the user; start the sign-in again without prompt=none.",
        "invalid_scope": "the app asked for scopes its registration does not allow; ask the server admin to "
        "register them or drop them from the app's request.",
        "temporarily_unavailable": "the login server is busy or its database is down; try again in a minute.",
        "server_error": "the login server failed; try again, and if it persists give the admin the time of the "
                        "attempt.",
    }
    DEFAULT_FIX = "start the sign-in again from the app; if it keeps failing, tell the server admin this error."

    def __init__(self, error: str, description: str | None):
        self.error = error if _ERROR_CODE.fullmatch(error or "") else "provider_error"
        said = _printable(description)[:500].rstrip(". ") if description else ""
        cause = f"The login server answered {self.error}" + (f" ({said})" if said else "")
        super().__init__(f"{cause}: {self.FIXES.get(self.error, self.DEFAULT_FIX)}")


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


# -- values --------------------------------------------------------------------


@dataclass(frozen=True)
class StartedTransaction:
    handle: str  # shown once, to the client that started it
    state: str
    authorization_url: str
    expires_in: int


@dataclass(frozen=True)
class Callback:
    """What the client's redirect URI received, as the broker needs it."""

    handle: str | None
    code: str | None = None
    state: str | None = None
    code_verifier: str | None = None
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None

    @classmethod
    def from_url(cls, handle: str | None, url: str, code_verifier: str | None = None) -> Callback:
        """The redirect URL the app received; its query carries code and state (or an error)."""
        try:
            query = urlsplit(url).query
        except ValueError:
            raise BrokerError("The callback url is not a URL; send the full URL the app was redirected to.") from None
        params = parse_qs(query, keep_blank_values=True)
        values = {}
        for name in ("code", "state", "iss", "error", "error_description"):
            found = params.get(name, [])
            if len(found) > 1:
                raise BrokerError(f"The callback url repeats the {name} parameter; send the URL exactly as received.")
            values[name] = found[0] if found and found[0] != "" else None
        return cls(handle=handle, code_verifier=code_verifier, **values)


@dataclass(frozen=True)
class BrokerResult:
    token: dict
    user: dict
    client_id: str


class _TokenRequest(OAuth2Request):
    """A token request made inside this process, for the provider's own Authlib grant."""

    def __init__(self, uri: str, data: dict[str, str], headers: dict[str, str]):
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(data)
        self._data = data

    @property
    def form(self):
        return self._data

    @property
    def args(self):
        return {}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# -- the service ---------------------------------------------------------------


class BrokerService:
    """Starts login transactions and completes them: state, nonce, PKCE and the code exchange."""

    def __init__(
        self, oidc: OidcProvider, sealer: SecretSealer, pepper: bytes, audit: AuditLog, throttle: Throttle, clock: Clock
    ):
        self.oidc = oidc
        self.sealer = sealer
        self.pepper = pepper
        self.audit = audit
        self.throttle = throttle
        self.clock = clock

    # -- start -----------------------------------------------------------------

    def start(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scope: str | None = None,
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        address: str = "",
    ) -> StartedTransaction:
        """A fresh transaction and the authorization URL to open; the throttle counts starts per address."""
        self.throttle.consume(Bucket(STARTS, address))
        try:
            return self._start(client_id, redirect_uri, scope, state, code_challenge, code_challenge_method)
        except BrokerError as error:
            db.session.rollback()
            self.audit.record(
                "broker.start",
                actor=f"client:{client_id[:64]}",
                outcome="failure",
                details={"error": error.error},
                commit=True,
            )
            raise

    def _start(
        self,
        client_id: str,
        redirect_uri: str,
        scope: str | None,
        state: str | None,
        code_challenge: str | None,
        code_challenge_method: str | None,
    ) -> StartedTransaction:
        client = self._broker_client(client_id)
        if not client.check_redirect_uri(redirect_uri):
            raise BrokerRedirectUriMismatch()
        scope = self._scope(client, scope)
        if state is not None and not _STATE.fullmatch(state):
            raise BrokerError(
                "The state must be 1 to 512 visible ASCII characters; let the broker make one by leaving it out."
            )
        if code_challenge_method is not None and code_challenge_method != "S256":
            raise BrokerError(
                "Only code_challenge_method S256 is supported; send an S256 code_challenge or none at all."
            )
        if code_challenge is not None and not _S256_CHALLENGE.fullmatch(code_challenge):
            raise BrokerError(
                "The code_challenge must be an S256 challenge: the 43-character unpadded base64url "
                "SHA-256 of the code_verifier; or leave it out and the broker makes one."
            )

        now = self.clock.now()
        handle = random_token(32)
        handle_hmac = keyed_hash(self.pepper, handle)
        state = state or random_token(32)
        nonce = random_token(24)
        verifier = None if code_challenge else random_token(48)
        db.session.execute(delete(BrokerTransaction).where(BrokerTransaction.expires_at < now - KEEP_EXPIRED))
        db.session.add(
            BrokerTransaction(
                handle_hmac=handle_hmac,
                state_hmac=keyed_hash(self.pepper, state),
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scope=scope,
                nonce=nonce,
                code_verifier_sealed=self.sealer.seal(verifier.encode(), _verifier_context(handle_hmac))
                if verifier
                else None,
                client_code_challenge=code_challenge,
                created_at=now,
                expires_at=now + timedelta(seconds=TRANSACTION_SECONDS),
            )
        )
        self.audit.record(
            "broker.start",
            actor=f"client:{client.client_id}",
            target=f"transaction:{handle_hmac[:16]}",
            details={"redirect_uri": redirect_uri, "scope": scope, "client_state": verifier is None},
        )
        db.session.commit()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge or s256(verifier),
            "code_challenge_method": "S256",
        }
        url = self.oidc.base + ENDPOINTS["authorization_endpoint"] + "?" + urlencode(params)
        return StartedTransaction(handle=handle, state=state, authorization_url=url, expires_in=TRANSACTION_SECONDS)

    def _broker_client(self, client_id: str) -> RegisteredClient:
        client = self.oidc.clients.get(client_id)
        if client is None:
            raise BrokerUnknownClient()
        if not client.row.is_broker:
            raise BrokerClientNotAllowed()
        if not client.check_response_type("code"):
            raise BrokerClientNotAllowed(
                "This client may not use the authorization code grant, which the broker runs: register it with "
                "--grant authorization_code, or use another client."
            )
        if not client.is_public and not client.row.secret_sealed:
            raise BrokerClientNotAllowed(
                "The broker can redeem codes only for public clients and broker clients with a client secret, and "
                "this one authenticates otherwise; register the client again with --broker and a client secret."
            )
        return client

    @staticmethod
    def _scope(client: RegisteredClient, scope: str | None) -> str:
        requested = scope if scope is not None else client.row.scope
        allowed = client.get_allowed_scope(requested)
        if allowed is None:
            raise BrokerInvalidScope(
                f"The scope asks for more than this client is registered for ({client.row.scope}); ask only for "
                "those scopes, or have the admin register the others."
            )
        if "openid" not in (scope_to_list(allowed) or []):
            raise BrokerInvalidScope(
                "The broker signs users in with OpenID Connect, so the scope must include openid; add it to the "
                "request (and to the client's registered scopes)."
            )
        return allowed

    # -- complete --------------------------------------------------------------

    def complete(self, callback: Callback, *, address: str = "", app_version: str = "") -> BrokerResult:
        """Check the callback against its transaction, redeem the code, check the ID token."""
        bad_handles = Bucket(BAD_HANDLES, address)
        self.throttle.check(bad_handles)
        if not callback.handle:
            raise self._failed(BrokerTransactionMissing(), client_id="", app_version=app_version)
        tx = self._find(callback.handle)
        if tx is None:
            self.throttle.fail(bad_handles)
            raise self._failed(BrokerTransactionUnknown(), client_id="", app_version=app_version)
        client = self.oidc.clients.get(tx.client_id)
        if client is None or not client.row.is_broker:
            raise self._failed(BrokerUnknownClient(), tx=tx, app_version=app_version)

        if callback.iss is not None and not same(callback.iss, self.oidc.issuer):
            raise self._failed(BrokerIssuerMismatch(), tx=tx, app_version=app_version)
        if callback.error is not None:
            raise self._failed(
                BrokerProviderError(callback.error, callback.error_description), tx=tx, app_version=app_version
            )
        if not callback.code:
            raise self._failed(BrokerCodeMissing(), tx=tx, app_version=app_version)
        self._check_state(tx, client, callback.state, app_version)
        if tx.client_code_challenge and not callback.code_verifier:
            raise self._failed(BrokerCodeVerifierMissing(), tx=tx, app_version=app_version)

        self._claim(tx, app_version)
        if tx.client_code_challenge:
            verifier = callback.code_verifier
        else:
            verifier = self.sealer.unseal(tx.code_verifier_sealed, _verifier_context(tx.handle_hmac)).decode()
        token = self._redeem(client, tx, callback.code, verifier, app_version)
        claims = self._validated_id_token(client, tx, token, app_version)
        user = {
            "sub": claims["sub"],
            "username": claims.get("preferred_username"),
            "email": claims.get("email"),
            "name": claims.get("name"),
            "groups": claims.get("groups"),
        }
        self.audit.record(
            "broker.complete",
            actor=f"client:{client.client_id}",
            target=f"user:{claims.get('preferred_username') or claims['sub']}",
            details=self._details(tx, app_version, state_returned=callback.state is not None),
        )
        db.session.commit()
        return BrokerResult(token=token, user=user, client_id=client.client_id)

    def _find(self, handle: str) -> BrokerTransaction | None:
        if not isinstance(handle, str) or not 0 < len(handle) <= 256:
            return None
        # A keyed hash looked up by equality: the handle itself is never stored, and the
        # index lookup reveals nothing about how close a guess was.
        return db.session.scalar(
            select(BrokerTransaction).where(BrokerTransaction.handle_hmac == keyed_hash(self.pepper, handle))
        )

    def _check_state(self, tx: BrokerTransaction, client: RegisteredClient, state: str | None, app_version: str):
        if state is None:
            if not client.row.allow_missing_state:
                raise self._failed(BrokerStateMissing(), tx=tx, app_version=app_version)
            # Accepted for old app versions that drop state: the handle names the transaction,
            # and its PKCE verifier still binds the code to it.
            log.warning(
                "broker callback without state accepted for client %s (%s), app version %s",
                client.name,
                client.client_id,
                app_version or "unknown",
                extra={"client_id": client.client_id, "client_name": client.name, "app_version": app_version},
            )
            self.audit.record(
                "broker.state_missing_allowed",
                actor=f"client:{client.client_id}",
                target=_target(tx),
                outcome="warning",
                details=self._details(tx, app_version),
                commit=True,
            )
            return
        presented = keyed_hash(self.pepper, state)
        # Constant time: the comparison must not tell how much of a guessed state was right.
        if same(presented, tx.state_hmac):
            return
        issued_elsewhere = db.session.scalar(
            select(BrokerTransaction.id).where(BrokerTransaction.state_hmac == presented).limit(1)
        )
        error = BrokerStateMismatch() if issued_elsewhere is not None else BrokerStateUnknown()
        raise self._failed(error, tx=tx, app_version=app_version)

    def _claim(self, tx: BrokerTransaction, app_version: str) -> None:
        """Mark the transaction used: of any number of concurrent callbacks exactly one changes the row."""
        now = self.clock.now()
        tx_id = tx.id
        db.session.commit()  # a fresh snapshot for the write (SQLite upgrades read locks badly)
        result = db.session.execute(
            update(BrokerTransaction)
            .where(
                BrokerTransaction.id == tx_id, BrokerTransaction.used_at.is_(None), BrokerTransaction.expires_at > now
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            db.session.commit()
            return
        db.session.rollback()
        db.session.refresh(tx)
        error = BrokerStateUsed() if tx.used_at is not None else BrokerStateExpired()
        raise self._failed(error, tx=tx, app_version=app_version)

    def _redeem(
        self, client: RegisteredClient, tx: BrokerTransaction, code: str, verifier: str | None, app_version: str
    ) -> dict:
        """The provider's own token endpoint logic, run in this process (no network, no proxy in between)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": tx.redirect_uri}
        if verifier:
            data["code_verifier"] = verifier
        headers = {}
        if client.is_public:
            data["client_id"] = client.client_id
        else:
            secret = self.oidc.clients.broker_secret(client.client_id) or ""
            pair = f"{quote(client.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        server = self.oidc.server
        try:
            _, token, _ = token_response(
                server, _TokenRequest(self.oidc.base + ENDPOINTS["token_endpoint"], data, headers)
            )
        except OAuth2Error as error:
            # Undo the code's claim: a request that failed redeemed nothing.
            db.session.rollback()
            raise self._failed(
                BrokerCodeRejected(error.error, error.description), tx=tx, app_version=app_version
            ) from None
        return dict(token)

    def _validated_id_token(
        self, client: RegisteredClient, tx: BrokerTransaction, token: dict, app_version: str
    ) -> dict:
        """Signature against this server's JWKS, then iss, aud, exp, iat, at_hash and the nonce."""
        try:
            keys = KeySet.import_key_set(self.oidc.signing.jwks())
            decoded = jwt.decode(token.get("id_token") or "", keys, algorithms=[client.id_token_signed_response_alg])
        except (JoseError, ValueError, TypeError) as exc:
            self._revoke(token)
            raise self._failed(
                BrokerIdTokenInvalid(f"signature: {type(exc).__name__}"), tx=tx, app_version=app_version
            ) from None
        claims = decoded.claims
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not same(nonce, tx.nonce):
            self._revoke(token)
            raise self._failed(BrokerNonceMismatch(), tx=tx, app_version=app_version)
        checked = CodeIDToken(
            claims,
            decoded.header,
            options={
                "iss": {"essential": True, "value": self.oidc.issuer},
                "aud": {"essential": True, "value": client.client_id},
            },
            params={"nonce": tx.nonce, "client_id": client.client_id, "access_token": token.get("access_token")},
        )
        try:
            checked.validate(now=int(self.clock.now().timestamp()))
        except JoseError as exc:
            self._revoke(token)
            raise self._failed(
                BrokerIdTokenInvalid(exc.description or exc.error), tx=tx, app_version=app_version
            ) from None
        return dict(claims)

    def _revoke(self, token: dict) -> None:
        """Tokens whose ID token failed the checks must not stay usable by anyone."""
        issued = self.oidc.tokens.find_access(token.get("access_token") or "")
        if issued is not None:
            self.oidc.tokens.revoke(issued, actor="broker")

    def _failed(
        self,
        error: BrokerError,
        *,
        tx: BrokerTransaction | None = None,
        client_id: str | None = None,
        app_version: str = "",
    ) -> BrokerError:
        """Audit a failed callback (committed on its own) and hand the error back to raise."""
        db.session.rollback()
        details = {"error": error.error}
        if tx is not None:
            details.update(self._details(tx, app_version))
        elif app_version:
            details["app_version"] = app_version[:100]
        self.audit.record(
            "broker.callback",
            actor=f"client:{tx.client_id if tx is not None else client_id or '-'}",
            target=_target(tx) if tx is not None else "",
            outcome="failure",
            details=details,
            commit=True,
        )
        log.info("broker callback refused: %s", error.error, extra={"error": error.error})
        return error

    @staticmethod
    def _details(tx: BrokerTransaction, app_version: str, **extra) -> dict:
        details = {"transaction": tx.handle_hmac[:16], **extra}
        if app_version:
            details["app_version"] = app_version[:100]
        return details

    # -- upkeep ----------------------------------------------------------------

    def sealed_columns(self) -> list[SealedColumn]:
        """Where PKCE verifiers of open transactions are sealed."""
        return [SealedColumn(BrokerTransaction, "code_verifier_sealed", lambda row: _verifier_context(row.handle_hmac))]

    def reseal_all(self, sealer: SecretSealer) -> int:
        """Re-seal the PKCE verifiers of open transactions (for `master-key rotate`; no commit)."""
        return sum(column.reseal(sealer) for column in self.sealed_columns())


def _verifier_context(handle_hmac: str) -> bytes:
    return b"broker-verifier:" + handle_hmac.encode()


def _target(tx: BrokerTransaction) -> str:
    return f"transaction:{tx.handle_hmac[:16]}"
