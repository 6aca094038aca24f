"""A user's TOTP secret (active and pending) and recovery codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UtcDateTime
from ..extensions import db


class TotpCredential(db.Model):
    """One row per user who has ever started enrolment.

    `totp_secret_sealed` is the active secret; `pending_secret_sealed` is a new
    one waiting for its first correct code, so re-enrolment replaces the old
    secret only on confirmation. Both are sealed under the master key with the
    user id as associated data. `last_step` is the last accepted time step: a
    step is accepted only by the conditional UPDATE that raises it.
    """

    __tablename__ = "totp_credentials"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    totp_secret_sealed: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pending_secret_sealed: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pending_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RecoveryCode(db.Model):
    """A single-use recovery code, kept only as a keyed hash (HMAC under the pepper)."""

    __tablename__ = "totp_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
