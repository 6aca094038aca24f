"""Password hashing, keyed hashes and sealing under the master key.

Hash what only needs checking (passwords with argon2id; high-entropy secrets
with a keyed HMAC), encrypt what must be read back (AES-256-GCM).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Sequence

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class PasswordHasher:
    """argon2id; unknown users are checked against a dummy hash so both paths cost the same.

    At most `at_once` hashes run at a time in this process (the others wait their turn): each
    holds `memory_kib` while it runs, so a burst of logins on every thread of a worker costs
    that many buffers, not one per thread, and no more cores than the worker's share."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int, at_once: int = 1):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._turns = threading.BoundedSemaphore(at_once)
        self._dummy = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        with self._turns:
            return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            with self._turns:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def keyed_hash(pepper: bytes, value: str) -> str:
    """HMAC-SHA-256 under the server pepper, hex. For high-entropy secrets only."""
    return hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).hexdigest()


def token_hash(value: str) -> str:
    """SHA-256 of a random token; enough for values with 256 bits of entropy."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality, so a comparison leaks no prefix length by its timing."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


class SealError(Exception):
    """A sealed value could not be opened: wrong key, wrong context or tampering."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"authserver-master-key-id" + key).hexdigest()[:12]


class SecretSealer:
    """AES-256-GCM under the master key; `v1.<key id>.<nonce+ciphertext>`.

    The key id travels with the ciphertext so an older master key can still open values
    until `master-key rotate` has re-sealed them all. The associated data binds a sealed
    value to its row (e.g. the user id), so a ciphertext copied to another row does not open.

    Which key seals is one fact for every instance: `sealing_key_id` (the database's
    record, set by `master-key rotate`; None: the first key of the keyring). A value under a
    key this process does not hold, or a sealing key it does not hold, makes it read its
    keyring again (`reload`: the keyring file, re-read without a restart). It never seals
    with any other key: without the sealing key, sealing fails (SealError) and /readyz says so.
    """

    def __init__(self, master_keys: Sequence[bytes], *, reload: Callable[[], Sequence[bytes]] | None = None,
                 sealing_key_id: Callable[[], str | None] | None = None):
        if not master_keys:
            raise ValueError("at least one master key is needed")
        self._keys = {key_id(k): AESGCM(k) for k in master_keys}
        self._first = key_id(master_keys[0])
        self._reload = reload
        self._sealing_key_id = sealing_key_id
        self._reloading = threading.Lock()

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys this process holds now."""
        return list(self._keys)

    @property
    def current_key_id(self) -> str:
        """The id of the key that seals now, whether or not this process holds it."""
        shared = self._sealing_key_id() if self._sealing_key_id is not None else None
        return shared or self._first

    def missing_sealing_key(self) -> str | None:
        """The id of the sealing key when this process cannot get it (its keyring re-read), else None."""
        kid = self.current_key_id
        return None if self._key(kid) is not None else kid

    def seal(self, plaintext: bytes, context: bytes) -> str:
        kid = self.current_key_id
        aead = self._key(kid)
        if aead is None:
            raise SealError(f"the master key {kid} that seals now is not in this server's keyring; add it "
                            "(AUTHSERVER_MASTER_KEY or the instance's master_key file) and restart")
        nonce = secrets.token_bytes(12)
        ciphertext = aead.encrypt(nonce, plaintext, context)
        blob = base64.urlsafe_b64encode(nonce + ciphertext).decode().rstrip("=")
        return f"v1.{kid}.{blob}"

    def unseal(self, sealed: str, context: bytes) -> bytes:
        try:
            version, kid, blob = sealed.split(".", 2)
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        except (ValueError, AttributeError):
            raise SealError("malformed sealed value") from None
        if version != "v1" or len(raw) < 13:
            raise SealError("malformed sealed value")
        aead = self._key(kid)
        if aead is None:
            raise SealError(f"no master key {kid!r} to open this value")
        try:
            return aead.decrypt(raw[:12], raw[12:], context)
        except InvalidTag:
            raise SealError("sealed value does not open under its key") from None

    def _key(self, kid: str) -> AESGCM | None:
        aead = self._keys.get(kid)
        if aead is None and self._reload is not None:
            with self._reloading:
                keys = self._reload()
                if keys:  # an unreadable keyring keeps what was loaded
                    self._keys = {key_id(k): AESGCM(k) for k in keys}
            aead = self._keys.get(kid)
        return aead
