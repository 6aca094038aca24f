"""The outbox of messages to send, and the single-use links they carry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..accounts.models import User
from ..dbtypes import UtcDateTime
from ..extensions import db


class OutboxMessage(db.Model):
    """A message waiting for the relay, or its record once sent or given up on.

    Written in the transaction of the change it tells about, sent by a worker thread of any
    instance (claimed with a lease, so two instances never send one twice at once). The body
    holds links: sealed under the master key, and dropped once the message is sent or given up.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random; the sealed body's associated data (a body copied to another row does not open).
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The last failure's kind and SMTP code, never the relay's text or the message.
    last_error: Mapped[str] = mapped_column(String(200), default="")


class EmailLink(db.Model):
    """A mailed link: verify an address, reset a password, accept an invitation.

    Only the SHA-256 of its 256-bit token is stored. `binding` is a keyed hash of what the
    link was issued against (the purpose, the user, the address, the password hash): once any
    of them changes the link no longer works. `used_at` is set once, by a conditional UPDATE.
    """

    __tablename__ = "email_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    binding: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")
