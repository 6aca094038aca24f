"""A software WebAuthn authenticator for server-side tests: an ES256 key from `cryptography`,
attestation "none", a signature counter, and every field an attacker could bend.

The tests build CBOR (cbor2) and sign; the server only ever parses through py_webauthn.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """One credential on one authenticator; `sign_count` moves on with every assertion."""

    def __init__(self, *, rp_id: str = "localhost", origin: str = "http://localhost", uv: bool = True,
                 sign_count: int = 0):
        self.rp_id = rp_id
        self.origin = origin
        self.uv = uv
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(32)
        self.sign_count = sign_count
        self.user_handle: str | None = None

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, rp_id: str, flags: int, attested: bool) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count)
        if attested:
            data += bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self.cose_key()
        return data

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict, *, origin: str | None = None, rp_id: str | None = None,
               challenge: str | None = None) -> str:
        """navigator.credentials.create(): the RegistrationResponseJSON for `options`."""
        self.user_handle = options["user"]["id"]
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if self.uv else 0)
        auth_data = self._auth_data(rp_id or options["rp"]["id"], flags, attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", challenge or options["challenge"], origin)
        return json.dumps({
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation),
                         "transports": ["internal"]},
            "clientExtensionResults": {}, "authenticatorAttachment": "platform",
        })

    def get(self, options: dict, *, origin: str | None = None, rp_id: str | None = None,
            challenge: str | None = None, uv: bool | None = None, count_step: int = 1) -> str:
        """navigator.credentials.get(): the AuthenticationResponseJSON for `options`, signed."""
        self.sign_count += count_step
        verified = self.uv if uv is None else uv
        auth_data = self._auth_data(rp_id or options.get("rpId") or self.rp_id,
                                    FLAG_UP | (FLAG_UV if verified else 0), attested=False)
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps({
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                         "signature": b64url(signature), "userHandle": self.user_handle},
            "clientExtensionResults": {},
        })
