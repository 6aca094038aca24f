"""The master keyring: which key seals, every sealed value, and rotating keys online.

Values sealed under the master key (TOTP secrets, signing keys, broker secrets and
verifiers) carry the id of the key that sealed them. Each instance holds a keyring: the
keys of `AUTHSERVER_MASTER_KEY`, or of the instance's `master_key` file, which it reads
again whenever it meets a key id it does not hold (crypto.SecretSealer). Which key seals
is one row in the database (`master_key_state`), the same for every instance, so no
instance ever seals with a key the others have retired.

Rotation runs in three steps, each safe on its own while servers run:

1. `master-key add`: a new key joins the keyring (the file; or, from the environment,
   `AUTHSERVER_MASTER_KEY=old,new` on every server, restarted one at a time). It only
   opens values; nothing is sealed with it yet.
2. `master-key rotate`: the new key becomes the sealing key and every sealed value is
   re-sealed under it, in one transaction (a value that does not open stops it and
   changes nothing). Instances read the new sealing key on their next seal.
3. `master-key retire`: once nothing is sealed under the old keys, they leave the keyring.

`master-key check` reports, for every kind of sealed value, how many are under which key
and which do not open, with what to do. Each capability that stores sealed values
registers its columns here (`SealedValues.register`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from .crypto import SealError, SecretSealer, key_id
from .dbtypes import UtcDateTime
from .extensions import db
from .settings import SettingsError, decode_key


class RotationFailed(Exception):
    """A sealed value did not open; nothing was changed. The message names the value."""


class MasterKeyState(db.Model):
    """One row (id 1): the id of the key that seals now, and how many rotations led there."""

    __tablename__ = "master_key_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sealing_key_id: Mapped[str] = mapped_column(String(12))
    generation: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


def shared_sealing_key_id() -> str | None:
    """The sealing key every instance uses (None before the first rotation: the keyring's first)."""
    return db.session.scalar(select(MasterKeyState.sealing_key_id).where(MasterKeyState.id == 1))


def read_keyring(path: Path) -> tuple[bytes, ...]:
    """The keys of a keyring file (comma-separated, base64url); () when it cannot be read."""
    try:
        texts = path.read_text(encoding="utf-8").split(",")
        return tuple(decode_key(text.strip(), "MASTER_KEY") for text in texts if text.strip())
    except (OSError, UnicodeDecodeError, SettingsError):
        return ()


def keyring_sealer(master_keys: Sequence[bytes], keyring_file: Path | None) -> SecretSealer:
    """The sealer of a running instance: its keys, re-read from `keyring_file` (if they come from
    one) when it meets a key it does not hold, and the shared sealing key."""
    reload = (lambda: read_keyring(keyring_file)) if keyring_file is not None else None
    return SecretSealer(master_keys, reload=reload, sealing_key_id=shared_sealing_key_id)


class SealedKind(Protocol):
    def reseal(self, sealer: SecretSealer) -> int: ...

    def inspect(self, sealer: SecretSealer) -> Inspection: ...


@dataclass
class Inspection:
    """Sealed values by the id of the key that sealed them, and the ones that do not open."""

    by_key: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: Inspection) -> None:
        self.by_key.update(other.by_key)
        self.failures.extend(other.failures)


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
                raise RotationFailed(f"{self.where(context)}: {exc}") from None
            setattr(row, self.column, sealer.seal(plaintext, context))
            count += 1
        return count

    def inspect(self, sealer: SecretSealer) -> Inspection:
        attribute = getattr(self.model, self.column)
        found = Inspection()
        for row in db.session.scalars(select(self.model).where(attribute.is_not(None))):
            sealed, context = getattr(row, self.column), self.context(row)
            found.by_key[sealed.split(".", 2)[1] if sealed.count(".") >= 2 else "?"] += 1
            try:
                sealer.unseal(sealed, context)
            except SealError as exc:
                found.failures.append(f"{self.where(context)}: {exc}")
        return found

    def where(self, context: bytes) -> str:
        return f"{self.model.__tablename__}.{self.column} ({context.decode()})"


class SealedValues:
    """The registry of sealed values, by kind; each kind one or more columns."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[SealedKind, ...]] = {}

    def register(self, name: str, *columns: SealedKind) -> None:
        if name in self._kinds:
            raise ValueError(f"sealed values {name!r} are registered twice")
        self._kinds[name] = columns

    @property
    def names(self) -> list[str]:
        return list(self._kinds)

    def reseal_all(self, sealer: SecretSealer) -> dict[str, int]:
        """Re-seal everything under `sealer`'s current key, in the current transaction."""
        db.session.flush()
        counts = {name: sum(c.reseal(sealer) for c in columns) for name, columns in self._kinds.items()}
        db.session.flush()
        return counts

    def inspect(self, sealer: SecretSealer) -> dict[str, Inspection]:
        report = {}
        for name, columns in self._kinds.items():
            report[name] = Inspection()
            for column in columns:
                report[name].add(column.inspect(sealer))
        return report


@dataclass(frozen=True)
class Rotation:
    key_id: str
    resealed: dict[str, int]
    generation: int
    older_key_ids: list[str]  # still in the keyring, opening nothing now: `master-key retire` drops them


def rotate_master_key(sealed: SealedValues, keyring: Sequence[bytes], new_key: bytes, now: datetime) -> Rotation:
    """Make `new_key` the sealing key of every instance and re-seal every registered value
    under it, in one transaction: a value that does not open changes nothing."""
    others = [k for k in keyring if k != new_key]
    sealer = SecretSealer([new_key, *others])
    try:
        counts = sealed.reseal_all(sealer)
        generation = record_sealing_key(key_id(new_key), now)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return Rotation(key_id=key_id(new_key), resealed=counts, generation=generation,
                    older_key_ids=[key_id(k) for k in others])


def record_sealing_key(kid: str, now: datetime) -> int:
    """Set the shared sealing key (current transaction); the new generation number."""
    state = db.session.scalar(select(MasterKeyState).where(MasterKeyState.id == 1).with_for_update())
    if state is None:
        state = MasterKeyState(id=1, generation=0)
        db.session.add(state)
    state.sealing_key_id, state.generation, state.changed_at = kid, state.generation + 1, now
    db.session.flush()
    return state.generation


def unused_keys(sealed: SealedValues, sealer: SecretSealer, keyring: Iterable[bytes]) -> tuple[list[bytes], list[str]]:
    """(keys of `keyring` that seal nothing now and open nothing stored, values that do not open)."""
    report = sealed.inspect(sealer)
    used = set().union(*(r.by_key for r in report.values())) | {sealer.current_key_id}
    failures = [f for r in report.values() for f in r.failures]
    return [k for k in keyring if key_id(k) not in used], failures
