"""Users and their server-side SSO sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..dbtypes import UtcDateTime
from ..extensions import db


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable, opaque subject identifier; never the username, which may change.
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(150))
    # Case-folded username: uniqueness is case-insensitive on every backend.
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(200), default="")
    groups: Mapped[list] = mapped_column(JSON, default=list)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)
    # OpenID Connect's other standard profile claims (given_name, family_name, nickname, picture,
    # website, locale, zoneinfo), those the user or an admin filled in; None or {} when none.
    profile: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"


class SsoSession(db.Model):
    """A logged-in browser or app; the cookie holds a random value whose hash is stored here."""

    __tablename__ = "sso_sessions"

    # Public session id (`sid` in ID tokens); not the cookie value.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_method: Mapped[str] = mapped_column(String(32))
    amr: Mapped[list] = mapped_column(JSON, default=list)
    acr: Mapped[str] = mapped_column(String(64), default="")
    # Set when the session was opened with an API key: its scopes bound the session.
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    scopes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")

    user: Mapped[User] = relationship(lazy="joined")


class PendingLogin(db.Model):
    """A password that checked out, waiting for its second factor (or for TOTP set-up).

    The browser holds a random handle in a cookie; only its hash is stored.
    It lives five minutes and is spent, atomically, by the step that completes the login.
    """

    __tablename__ = "pending_logins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # "totp": enter a code; "enrol": policy requires TOTP and the user has none yet.
    purpose: Mapped[str] = mapped_column(String(16))
    next_url: Mapped[str] = mapped_column(String(2000), default="/account")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)

    user: Mapped[User] = relationship(lazy="joined")
