"""Every sealed value in the database, so that `master-key rotate` can re-seal them all.

Each capability that stores values sealed under the master key registers a
resealer: a function that opens every one of its values with the given sealer
and seals it again (under the sealer's current key) in the current transaction,
without committing, and answers how many it re-sealed. `rotate_master_key` runs
them all in one transaction, so a failure leaves every value as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .crypto import SealError, SecretSealer, key_id
from .extensions import db

Resealer = Callable[[SecretSealer], int]


class RotationFailed(Exception):
    """A sealed value did not open; nothing was changed. The message names the value."""


@dataclass(frozen=True)
class SealedColumn:
    """A nullable string column of sealed values whose associated data comes from its row."""

    model: type
    column: str
    context: Callable[[Any], bytes]

    def reseal(self, sealer: SecretSealer) -> int:
        attribute = getattr(self.model, self.column)
        # FOR UPDATE (PostgreSQL): a concurrent write cannot slip in between read and re-seal.
        rows = db.session.scalars(select(self.model).where(attribute.is_not(None)).with_for_update())
        count = 0
        for row in rows:
            context = self.context(row)
            try:
                plaintext = sealer.unseal(getattr(row, self.column), context)
            except SealError as exc:
                raise RotationFailed(f"{self.model.__tablename__}.{self.column} ({context.decode()}): {exc}") from None
            setattr(row, self.column, sealer.seal(plaintext, context))
            count += 1
        return count


class SealedValues:
    """The registry of resealers, one per kind of sealed value."""

    def __init__(self) -> None:
        self._resealers: dict[str, Resealer] = {}

    def register(self, name: str, resealer: Resealer) -> None:
        if name in self._resealers:
            raise ValueError(f"sealed values {name!r} are registered twice")
        self._resealers[name] = resealer

    @property
    def names(self) -> list[str]:
        return list(self._resealers)

    def reseal_all(self, sealer: SecretSealer) -> dict[str, int]:
        """Re-seal everything under `sealer`'s current key, in the current transaction."""
        db.session.flush()
        counts = {name: resealer(sealer) for name, resealer in self._resealers.items()}
        db.session.flush()
        return counts


@dataclass(frozen=True)
class Rotation:
    key_id: str
    resealed: dict[str, int]
    retired_key_ids: list[str]


def rotate_master_key(sealed: SealedValues, current_keys: Sequence[bytes], new_key: bytes) -> Rotation:
    """Re-seal every registered value under `new_key`, in one transaction.

    The sealer opens with every current key and seals with the new one; once
    this has committed no value needs the old keys, so they can be retired.
    """
    old_keys = [k for k in current_keys if k != new_key]
    sealer = SecretSealer([new_key, *old_keys])
    try:
        counts = sealed.reseal_all(sealer)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return Rotation(key_id=key_id(new_key), resealed=counts, retired_key_ids=[key_id(k) for k in old_keys])
