"""Single-use links: 256-bit random tokens, stored as SHA-256, bound to purpose, user and state."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from ..accounts.models import User
from ..clock import Clock
from ..crypto import keyed_hash, random_token, same, token_hash
from ..errors import DomainError
from ..extensions import db
from .models import EmailLink

PURPOSES = ("verify", "reset", "invite")
# secrets.token_urlsafe(32): 43 characters of the URL-safe base64 alphabet.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class LinkInvalid(DomainError):
    """Unknown, used, expired or outdated: one answer for all (nothing to learn from which)."""

    status = 400
    error = "link_invalid"

    def __init__(self, description: str = ""):
        super().__init__(description or "This link does not work any more: it was used already, it expired, or "
                         "something changed since it was sent. Ask for a new one.")


class LinkStore:
    def __init__(self, pepper: bytes, clock: Clock):
        self.pepper = pepper
        self.clock = clock

    def binding(self, purpose: str, user: User, email: str) -> str:
        """What the link was issued against, hashed: the user, the address it went to and (for a
        reset or an invitation) the password hash of the time. A password set or changed since, or
        another address, and the link is dead (an older reset link cannot undo a newer password)."""
        # A verification link outlives a password change; reset and invitation links do not.
        password = "" if purpose == "verify" else user.password_hash or ""
        state = "\x1f".join((purpose, str(user.id), email.casefold(), password))
        return keyed_hash(self.pepper, state)

    def issue(self, user: User, purpose: str, lifetime: timedelta) -> str:
        """A new link's token for `user`'s current address (added to the caller's transaction)."""
        assert purpose in PURPOSES
        token = random_token(32)
        now = self.clock.now()
        db.session.add(EmailLink(token_hash=token_hash(token), purpose=purpose, user_id=user.id, email=user.email,
                                 binding=self.binding(purpose, user, user.email), created_at=now,
                                 expires_at=now + lifetime))
        return token

    def find(self, token: str | None, purpose: str) -> EmailLink:
        """The live link behind `token` for `purpose`, or LinkInvalid. Spends nothing."""
        if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
            raise LinkInvalid()
        link = db.session.scalar(select(EmailLink).where(EmailLink.token_hash == token_hash(token)))
        if link is None or not same(link.purpose, purpose) or link.used_at is not None:
            raise LinkInvalid()
        if self.clock.now() >= link.expires_at:
            raise LinkInvalid("This link has expired. Ask for a new one.")
        user = link.user
        # Compared in constant time: the binding is a secret-derived value.
        if user.is_disabled or not same(link.binding, self.binding(purpose, user, user.email)):
            raise LinkInvalid()
        return link

    def spend(self, token: str | None, purpose: str) -> EmailLink:
        """Use the link once: of two concurrent uses exactly one gets it (a conditional UPDATE);
        LinkInvalid for the other, and for anything `find` refuses. In the caller's transaction."""
        link = self.find(token, purpose)
        spent = db.session.execute(
            update(EmailLink)
            .where(EmailLink.id == link.id, EmailLink.used_at.is_(None), EmailLink.binding == link.binding)
            .values(used_at=self.clock.now())
        ).rowcount
        if spent != 1:
            db.session.rollback()
            raise LinkInvalid()
        return link

    def withdraw(self, user: User, purpose: str) -> int:
        """Every unused link of `user` for `purpose` dead (in the caller's transaction)."""
        return db.session.execute(
            update(EmailLink)
            .where(EmailLink.user_id == user.id, EmailLink.purpose == purpose, EmailLink.used_at.is_(None))
            .values(used_at=self.clock.now())
        ).rowcount

    def live(self, purpose: str, user_ids: list[int] | None = None) -> list[EmailLink]:
        stmt = select(EmailLink).where(EmailLink.purpose == purpose, EmailLink.used_at.is_(None),
                                       EmailLink.expires_at > self.clock.now()).order_by(EmailLink.id.desc())
        if user_ids is not None:
            stmt = stmt.where(EmailLink.user_id.in_(user_ids))
        return list(db.session.scalars(stmt))
