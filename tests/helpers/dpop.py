"""A DPoP client's side (RFC 9449), written here: a key pair and proofs for one request each,
with every field a test may want to get wrong."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey


class DPoPKey:
    def __init__(self, kind: str = "EC", clock=None):
        if kind == "EC":
            self.key, self.alg = ECKey.generate_key("P-256"), "ES256"
        elif kind == "OKP":
            self.key, self.alg = OKPKey.generate_key("Ed25519"), "EdDSA"
        else:
            self.key, self.alg = RSAKey.generate_key(2048), "RS256"
        self.clock = clock
        self.nonce: str | None = None

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def now(self) -> int:
        return int(self.clock.now().timestamp()) if self.clock is not None else int(time.time())

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = "",
              header: dict | None = None, claims: dict | None = None, alg: str | None = None,
              key=None, jwk: dict | None = None) -> str:
        """A proof for `method` `url`; `nonce` "" means the last one the server gave (if any)."""
        body = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": self.now()}
        nonce = self.nonce if nonce == "" else nonce
        if nonce:
            body["nonce"] = nonce
        if access_token is not None:
            body["ath"] = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
        body.update(claims or {})
        protected = {"typ": "dpop+jwt", "alg": alg or self.alg, "jwk": jwk or self.key.as_dict(private=False)}
        protected.update(header or {})
        return jwt.encode(protected, {k: v for k, v in body.items() if v is not None}, key or self.key,
                          algorithms=[alg or self.alg])

    def remember_nonce(self, response) -> None:
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self.nonce = nonce
