"""Signing keys: generated on first need, sealed at rest, rotated, published as JWKS.

Private keys are sealed with the master key (AES-256-GCM) and bound to their
`kid`, so a sealed blob copied onto another row does not open. An unsealed
key never changes, so it is cached per process by `kid`; which key is active
is read from the database every time, so a rotation takes effect at once in
every worker.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import or_, select, update

from ..clock import Clock
from ..crypto import SecretSealer
from ..extensions import db
from ..sealing import SealedColumn
from .models import SigningKey

SUPPORTED_ALGS = ("RS256", "ES256", "EdDSA")
DEFAULT_ALG = "RS256"


def _generate(alg: str):
    if alg == "RS256":
        return RSAKey.generate_key(3072, private=True)  # ASVS 11.2.3
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", private=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def _context(kid: str) -> bytes:
    return b"signing-key:" + kid.encode()


class SigningKeyService:
    """Signs JWTs with the active key of an algorithm and publishes every live public key."""

    def __init__(self, sealer: SecretSealer, clock: Clock, publish_after_retire: timedelta):
        self.sealer = sealer
        self.clock = clock
        # How long a retired key stays in JWKS: the longest lifetime of anything it signed.
        self.publish_after_retire = publish_after_retire
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- signing ---------------------------------------------------------------

    def sign(self, claims: dict, alg: str = DEFAULT_ALG, *, typ: str | None = None) -> str:
        key = self.active_key(alg)
        header = {"alg": alg, "kid": key.kid}
        if typ:
            header["typ"] = typ
        return jwt.encode(header, claims, key, algorithms=[alg])

    def active_key(self, alg: str):
        """The private key that signs `alg` now, generated on first need."""
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        row = self._active_row(alg)
        if row is None:
            row = self._create(alg)
        return self._unsealed(row)

    def _active_row(self, alg: str) -> SigningKey | None:
        return db.session.scalar(
            select(SigningKey)
            .where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc(), SigningKey.kid)
            .limit(1)
        )

    def _create(self, alg: str) -> SigningKey:
        key = _generate(alg)
        kid = secrets.token_urlsafe(12)
        private = json.dumps(key.as_dict(private=True)).encode()
        public = dict(key.as_dict(private=False), kid=kid, alg=alg, use="sig")
        row = SigningKey(
            kid=kid,
            alg=alg,
            public_jwk=public,
            private_sealed=self.sealer.seal(private, _context(kid)),
            created_at=self.clock.now(),
        )
        db.session.add(row)
        db.session.commit()
        return row

    def _unsealed(self, row: SigningKey):
        cached = self._keys.get(row.kid)
        if cached is not None:
            return cached
        data = json.loads(self.sealer.unseal(row.private_sealed, _context(row.kid)))
        data.update(kid=row.kid, alg=row.alg)
        key = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}[data["kty"]].import_key(data)
        with self._lock:
            self._keys[row.kid] = key
        return key

    # -- publishing ------------------------------------------------------------

    def jwks(self) -> dict:
        """Every public key that may still verify a live token (the default key made on first need)."""
        now = self.clock.now()
        rows = list(db.session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.unpublish_at.is_(None), SigningKey.unpublish_at > now))
            .order_by(SigningKey.created_at.desc(), SigningKey.kid)
        ))
        if not rows:
            rows = [self._create(DEFAULT_ALG)]
        return {"keys": [dict(row.public_jwk) for row in rows]}

    # -- rotation --------------------------------------------------------------

    def rotate(self, algs: tuple[str, ...] | None = None) -> list[str]:
        """Retire the active keys and create new ones that sign from now on.

        The retired keys stay published until every token they signed has
        expired. Returns the new kids.
        """
        now = self.clock.now()
        active = list(db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))))
        targets = set(algs) if algs else {row.alg for row in active} | {DEFAULT_ALG}
        db.session.execute(
            update(SigningKey)
            .where(SigningKey.retired_at.is_(None), SigningKey.alg.in_(targets))
            .values(retired_at=now, unpublish_at=now + self.publish_after_retire)
        )
        db.session.commit()
        self.prune(now)
        return [self._create(alg).kid for alg in sorted(targets)]

    def sealed_columns(self) -> list[SealedColumn]:
        """Where private keys are sealed."""
        return [SealedColumn(SigningKey, "private_sealed", lambda row: _context(row.kid))]

    def reseal_all(self, sealer) -> int:
        """Re-seal every private key under `sealer` (for `master-key rotate`; current transaction, no commit)."""
        return sum(column.reseal(sealer) for column in self.sealed_columns())

    def prune(self, now: datetime | None = None) -> int:
        """Delete keys no longer published; nothing they signed is still valid."""
        now = now or self.clock.now()
        result = db.session.execute(
            SigningKey.__table__.delete().where(SigningKey.unpublish_at.is_not(None), SigningKey.unpublish_at <= now)
        )
        db.session.commit()
        return result.rowcount
