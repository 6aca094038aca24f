"""DPoP (RFC 9449): proofs of possession checked at the token endpoint, the pushed authorization
request endpoint and wherever an access token is accepted; written once, for every caller.

A proof is a JWT the client signs with its own key for one request (method and URL), once
(`jti`, remembered in the database across workers and instances until its `iat` is out of
the window), recently (`iat`), at the token endpoint with a nonce this server issued, and at
a resource with the hash of the access token it accompanies (`ath`). Tokens issued with a
proof are bound to the key's SHA-256 thumbprint (`jkt`): an access token (and a public
client's refresh token) is then refused without a proof by the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey
from sqlalchemy import bindparam, delete, insert
from sqlalchemy.exc import IntegrityError

from ..clock import Clock
from ..hotpath import write_one
from ..identity import Resource
from .models import DPoPProofJti

# Asymmetric algorithms only (RFC 9449 §4.2: never `none` nor a MAC).
DPOP_ALGS = ("ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519")
# A proof's `iat` may be this old, or this far ahead of our clock (a phone's clock drifts).
PROOF_PAST_SECONDS = 300
PROOF_FUTURE_SECONDS = 60
# A server nonce is good for its time slot and the next one.
NONCE_SLOT_SECONDS = 300
MAX_PROOF_BYTES = 8192
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# A proof's header carries its public key: room for an RSA key of 4096 bits, not more.
_REGISTRY = jws.JWSRegistry(algorithms=DPOP_ALGS)
_REGISTRY.max_header_length = 2048
_REGISTRY.max_payload_length = 4096
# Purge remembered proofs once every this many proofs a worker records.
PURGE_EVERY = 200

_PROOFS = DPoPProofJti.__table__
_REMEMBER = insert(_PROOFS)
_PURGE = delete(_PROOFS).where(_PROOFS.c.expires_at < bindparam("now", type_=_PROOFS.c.expires_at.type))

# The key the token being issued is bound to: set by the token endpoint around the issuance,
# read by the JWT access token generator for its `cnf` claim.
binding: ContextVar[str | None] = ContextVar("dpop_binding", default=None)


class InvalidProof(OAuth2Error):
    """RFC 9449 §5 / §7.1: a missing, malformed, replayed or mismatched proof."""

    error = "invalid_dpop_proof"
    status_code = 400

    def __init__(self, description: str, *, nonce: str | None = None):
        # Authlib refuses quotes and backslashes in descriptions (some name a URL the caller chose).
        super().__init__(description.replace('"', "'").replace("\\", "/"))
        self.nonce = nonce

    def get_headers(self):
        headers = super().get_headers()
        return [*headers, ("DPoP-Nonce", self.nonce)] if self.nonce else headers


class UseNonce(InvalidProof):
    """RFC 9449 §8: the proof must carry the nonce this answer gives (DPoP-Nonce)."""

    error = "use_dpop_nonce"


@dataclass(frozen=True)
class Proof:
    jkt: str  # the JWK SHA-256 thumbprint of the key that signed it (RFC 7638)


def thumbprint_of(value: str) -> bool:
    """Is `value` shaped like a JWK SHA-256 thumbprint (43 base64url characters)?"""
    return len(value) == 43 and all(c.isalnum() or c in "-_" for c in value)


def access_token_hash(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode("ascii", "replace")).digest()).rstrip(b"=").decode()


def same_url(claimed: object, expected: str) -> bool:
    """RFC 9449 §4.3 step 9: the same URL, query and fragment ignored, compared after the
    syntax-based normalisation of RFC 3986 §6.2.2 (case of scheme and host, default ports)."""
    if not isinstance(claimed, str) or len(claimed) > 2000:
        return False
    try:
        a, b = urlsplit(claimed), urlsplit(expected)
        ports = (a.port or _DEFAULT_PORTS.get(a.scheme.lower()), b.port or _DEFAULT_PORTS.get(b.scheme.lower()))
    except ValueError:
        return False
    return (
        a.scheme.lower() == b.scheme.lower()
        and (a.hostname or "") == (b.hostname or "")
        and ports[0] == ports[1]
        and (a.path or "/") == (b.path or "/")
        and not a.username and not a.password
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


class DPoP:
    def __init__(self, secret: str, clock: Clock):
        self._nonce_key = hmac.new(secret.encode(), b"authserver.dpop-nonce", hashlib.sha256).digest()
        self.clock = clock
        self._recorded = 0

    # -- server nonces: stateless, the same on every instance that shares the secret key --

    def nonce(self) -> str:
        return self._nonce_for(self._slot())

    def _slot(self) -> int:
        return int(self.clock.now().timestamp()) // NONCE_SLOT_SECONDS

    def _nonce_for(self, slot: int) -> str:
        packed = struct.pack(">Q", slot)
        mac = hmac.new(self._nonce_key, packed, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(packed + mac).rstrip(b"=").decode()

    def _nonce_valid(self, value: object) -> bool:
        if not isinstance(value, str) or len(value) > 64:
            return False
        slot = self._slot()
        return any(hmac.compare_digest(value, self._nonce_for(s)) for s in (slot, slot - 1))

    # -- proofs --

    def verify(self, headers, resource: Resource, *, access_token: str | None = None,
               require_nonce: bool = False) -> Proof | None:
        """The request's proof checked (RFC 9449 §4.3), or None when it carries none.
        Raises InvalidProof (UseNonce when the nonce is missing or stale)."""
        if headers.get("DPoP") is None:  # the usual case, found without walking every header
            return None
        values = headers.getlist("DPoP") if hasattr(headers, "getlist") else [headers.get("DPoP")]
        values = [v for v in values if v is not None]
        if not values:
            return None
        if len(values) > 1:
            raise InvalidProof("Send one DPoP header, not several.")
        text = values[0].strip()
        if not text or len(text) > MAX_PROOF_BYTES:
            raise InvalidProof("The DPoP proof is empty or too long.")
        key, claims = self._signed(text)
        self._check_claims(claims, resource, access_token)
        if require_nonce and not self._nonce_valid(claims.get("nonce")):
            raise UseNonce("This server requires a nonce in DPoP proofs: sign a new proof with the nonce in the "
                           "DPoP-Nonce header of this answer.", nonce=self.nonce())
        jkt = key.thumbprint()
        self._remember(jkt, claims["jti"], claims["iat"])
        return Proof(jkt)

    def _signed(self, text: str):
        try:
            header = jws.extract_compact(text.encode("ascii"), registry=_REGISTRY).protected
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise InvalidProof("The DPoP proof is not a signed JWT in compact form.") from None
        if header.get("typ") != "dpop+jwt":
            raise InvalidProof("The DPoP proof's header must have typ dpop+jwt.")
        alg = header.get("alg")
        if alg not in DPOP_ALGS:
            raise InvalidProof(f"The DPoP proof's algorithm must be one of {', '.join(DPOP_ALGS)}.")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or PRIVATE_JWK_MEMBERS.intersection(jwk):
            raise InvalidProof("The DPoP proof's header must carry the public key as jwk (and no private part).")
        try:
            key = JWKRegistry.import_key(jwk)
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidProof("The DPoP proof's jwk is not a valid public key.") from None
        if not isinstance(key, (ECKey, RSAKey, OKPKey)) or (
                isinstance(key, RSAKey) and key.raw_value.key_size < 2048):
            raise InvalidProof("The DPoP proof's key must be an EC, OKP or RSA (2048 bits or more) public key.")
        try:
            token = jwt.decode(text, key, algorithms=[alg], registry=_REGISTRY)
        except (JoseError, ValueError, TypeError):
            raise InvalidProof("The DPoP proof does not verify with its jwk, or its header or claims are not "
                               "valid JSON Web Token parts.") from None
        return key, token.claims

    def _check_claims(self, claims: dict, resource: Resource, access_token: str | None) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise InvalidProof("The DPoP proof needs a jti: a unique identifier of up to 256 characters.")
        if resource.method is None:
            raise InvalidProof("The proxy did not say which method the original request used (X-Forwarded-Method); "
                               "a DPoP proof cannot be checked without it.")
        if claims.get("htm") != resource.method:
            raise InvalidProof(f"The DPoP proof is for another method (htm must be {resource.method}).")
        if not same_url(claims.get("htu"), resource.url):
            raise InvalidProof(f"The DPoP proof is for another URL (htu must be {resource.url}).")
        iat = claims.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise InvalidProof("The DPoP proof needs iat, the time it was made in seconds.")
        now = int(self.clock.now().timestamp())
        if not now - PROOF_PAST_SECONDS <= iat <= now + PROOF_FUTURE_SECONDS:
            raise InvalidProof(f"The DPoP proof's iat is not within {PROOF_PAST_SECONDS} s of this server's time: "
                               "make a new proof for every request (and check the device's clock).")
        if access_token is not None and not hmac.compare_digest(
                str(claims.get("ath", "")), access_token_hash(access_token)):
            raise InvalidProof("The DPoP proof's ath is not the hash of the access token it came with.")

    def _remember(self, jkt: str, jti: str, iat: int) -> None:
        """Record the proof; InvalidProof if it was presented before (shared by every instance)."""
        key = hashlib.sha256(f"{jkt}\x00{jti}".encode()).hexdigest()
        until = datetime.fromtimestamp(iat + PROOF_PAST_SECONDS + PROOF_FUTURE_SECONDS, tz=UTC)
        now = self.clock.now()
        self._recorded += 1
        if self._recorded % PURGE_EVERY == 0:
            write_one(_PURGE, {"now": now - timedelta(seconds=1)})
        try:
            write_one(_REMEMBER, {"key": key, "expires_at": until})
        except IntegrityError:
            raise InvalidProof("This DPoP proof was used before: make a new proof (new jti) for every request.") \
                from None

    # -- tokens presented at a resource --

    def check_presented(self, headers, resource: Resource, scheme: str, token: str, bound_jkt: str | None) -> None:
        """An access token sent with `scheme` ("bearer" or "dpop") to `resource`: a bound token only as
        DPoP with a proof by its key, an unbound one only as Bearer. Raises Refused."""
        if scheme == "bearer":
            if bound_jkt:
                raise Refused("invalid_token", "This access token is bound to a DPoP key: send it as "
                              "Authorization: DPoP <token>, with a DPoP proof.", dpop=True)
            return
        if not bound_jkt:
            raise Refused("invalid_token", "This access token is not DPoP-bound: send it as Authorization: Bearer.",
                          dpop=True)
        try:
            proof = self.verify(headers, resource, access_token=token)
        except InvalidProof as exc:
            raise Refused(exc.error, exc.description, dpop=True) from None
        if proof is None:
            raise Refused("invalid_dpop_proof", "A DPoP-bound access token needs a DPoP proof header.", dpop=True)
        if not hmac.compare_digest(proof.jkt, bound_jkt):
            raise Refused("invalid_dpop_proof", "The DPoP proof is signed by another key than the one the access "
                          "token is bound to.", dpop=True)


class Refused(Exception):
    """A token refused at a resource; `challenge` is the WWW-Authenticate value to answer with."""

    def __init__(self, error: str, description: str, *, dpop: bool):
        super().__init__(description)
        self.error = error
        self.description = description
        self.challenge = challenge(error, description) if dpop else None


def challenge(error: str | None = None, description: str | None = None) -> str:
    """WWW-Authenticate for DPoP (RFC 9449 §7.1), with the algorithms accepted."""
    parts = [f'algs="{" ".join(DPOP_ALGS)}"']
    if error:
        parts.insert(0, f'error="{error}"')
        if description:
            parts.insert(1, 'error_description="' + description.replace('"', "'").replace("\\", "/") + '"')
    return "DPoP " + ", ".join(parts)
