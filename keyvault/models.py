"""API keys: only an HMAC of each secret is stored, looked up by key id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authserver.accounts.models import User
from authserver.dbtypes import UtcDateTime
from authserver.extensions import db


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The public half; unique, so verification is one indexed read.
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    # HMAC-SHA-256(pepper, secret), hex. The secret itself is never stored.
    secret_hmac: Mapped[str] = mapped_column(String(64))
    # After a rotation with grace: the old secret's HMAC, valid until previous_valid_until.
    previous_secret_hmac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Normalised CIDR networks (IPv4 and IPv6); empty: any address.
    allowed_cidrs: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(200), default="")
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Touched at most once a minute, so verification stays a read.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_used_ip: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<ApiKey {self.key_id}>"
