"""Signing keys: generated on first need, sealed at rest, rotated, published as JWKS.

Private keys are sealed with the master key (AES-256-GCM) and bound to their
`kid`, so a sealed blob copied onto another row does not open. An unsealed
key never changes, so it is cached per process by `kid`; which key is active
is read from the database every time, so a rotation takes effect at once in
every worker and host.

A rotation publishes the next key first and signs with it only once every JWKS a
relying party may have cached (JWKS_MAX_AGE, the lifetime /oauth/jwks advertises)
has been fetched again, so no client meets a `kid` it does not know; the old key
stays published until what it signed has expired. `rotate(now=True)` switches at
once (an emergency); `withdraw(kid)` takes a compromised key out of JWKS at once.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import func, or_, select, update

from ..clock import Clock
from ..crypto import SecretSealer
from ..extensions import db
from ..sealing import SealedColumn
from .models import SigningKey

SUPPORTED_ALGS = ("RS256", "ES256", "EdDSA")
DEFAULT_ALG = "RS256"
# How long clients may cache /oauth/jwks (its Cache-Control), and so how long a rotated-in
# key is published before it signs, plus a margin for a fetch that was under way.
JWKS_MAX_AGE = 60
PUBLISH_AHEAD = timedelta(seconds=JWKS_MAX_AGE + 10)


class SigningKeyError(Exception):
    """A signing-key operation that cannot be done (an unknown kid)."""


@dataclass(frozen=True)
class Rotated:
    kid: str
    alg: str
    signs_from: datetime


@dataclass(frozen=True)
class Withdrawn:
    kid: str
    alg: str
    signed_from: datetime  # the window in which it signed
    signed_until: datetime


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
        """The private key that signs `alg` now. The first need of any key makes one of every
        algorithm, so that each is in JWKS before anything is signed with it (a relying party
        that fetched JWKS before a client's first ES256 token still knows the key)."""
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        row = self._active_row(alg)
        if row is None:
            self._create_missing()
            row = self._active_row(alg) or self._create(alg)  # a key withdrawn with nothing to follow it
        return self._unsealed(row)

    def _create_missing(self) -> None:
        """A key for every algorithm that has none published yet."""
        now = self.clock.now()
        published = set(db.session.scalars(
            select(SigningKey.alg).where(or_(SigningKey.unpublish_at.is_(None), SigningKey.unpublish_at > now))))
        for alg in SUPPORTED_ALGS:
            if alg not in published:
                self._create(alg)

    def _active_row(self, alg: str) -> SigningKey | None:
        """The key of `alg` that signs now: active already, not retired yet, the newest such."""
        now = self.clock.now()
        return db.session.scalar(
            select(SigningKey)
            .where(
                SigningKey.alg == alg,
                or_(SigningKey.activate_at.is_(None), SigningKey.activate_at <= now),
                or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now),
            )
            .order_by(func.coalesce(SigningKey.activate_at, SigningKey.created_at).desc(), SigningKey.kid)
            .limit(1)
        )

    def _pending_row(self, alg: str) -> SigningKey | None:
        """A key of `alg` published already that signs from a later time."""
        return db.session.scalar(
            select(SigningKey)
            .where(SigningKey.alg == alg, SigningKey.activate_at > self.clock.now(), SigningKey.retired_at.is_(None))
            .order_by(SigningKey.activate_at.desc())
            .limit(1)
        )

    def _create(self, alg: str, activate_at: datetime | None = None) -> SigningKey:
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
            activate_at=activate_at,
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
        if {row.alg for row in rows} != set(SUPPORTED_ALGS):
            self._create_missing()
            return self.jwks()
        return {"keys": [dict(row.public_jwk) for row in rows]}

    # -- rotation --------------------------------------------------------------

    def rotate(self, algs: tuple[str, ...] | None = None, *, now: bool = False) -> list[Rotated]:
        """Publish a new key of each algorithm in use (and the default one) and sign with it
        after PUBLISH_AHEAD (`now`: at once); the keys it replaces stop signing then and stay
        published until every token they signed has expired. A rotation already scheduled is
        kept (with `now`, it takes effect at once)."""
        current = self.clock.now()
        targets = sorted(set(algs) if algs else set(SUPPORTED_ALGS))
        switch_at = current if now else current + PUBLISH_AHEAD
        rotated = []
        for alg in targets:
            pending = self._pending_row(alg)
            if pending is not None and not now:
                rotated.append(Rotated(pending.kid, alg, pending.activate_at))
                continue
            # The keys that sign now (or would, until a pending one takes over) retire at the switch.
            db.session.execute(
                update(SigningKey)
                .where(SigningKey.alg == alg, SigningKey.kid != (pending.kid if pending else ""),
                       or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > switch_at))
                .values(retired_at=switch_at, unpublish_at=switch_at + self.publish_after_retire)
            )
            if pending is not None:
                pending.activate_at = switch_at
                db.session.commit()
                rotated.append(Rotated(pending.kid, alg, switch_at))
            else:
                db.session.commit()
                row = self._create(alg, activate_at=switch_at)
                rotated.append(Rotated(row.kid, alg, switch_at))
        self.prune(current)
        return rotated

    def withdraw(self, kid: str) -> Withdrawn:
        """Take a key out of JWKS and out of service at once (it may be compromised). The next
        token of its algorithm is signed by the key scheduled to follow it, or a new one."""
        now = self.clock.now()
        row = db.session.get(SigningKey, kid) if isinstance(kid, str) and len(kid) <= 64 else None
        if row is None or (row.unpublish_at is not None and row.unpublish_at <= now):
            raise SigningKeyError(f"there is no published signing key {kid!r}")
        signed_from = row.activate_at or row.created_at
        signed_until = min(row.retired_at, now) if row.retired_at else now
        row.retired_at, row.unpublish_at = signed_until, now
        pending = self._pending_row(row.alg)
        if pending is not None and self._active_row(row.alg) is None:
            pending.activate_at = now
        db.session.commit()
        with self._lock:
            self._keys.pop(kid, None)
        return Withdrawn(kid, row.alg, signed_from, signed_until)

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
