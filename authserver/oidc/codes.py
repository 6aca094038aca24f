"""Authorization codes: single-use, short-lived, a replay revokes what the first redemption issued."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import token_hash
from ..extensions import db
from .clients import CODE_SECONDS
from .models import AuthorizationCode
from .tokens import TokenStore, record_revocation

log = logging.getLogger("authserver.oidc")



class TicketSpent(Exception):
    """The login ticket of an authorization request was used for a code already."""


class CodeStore:
    """Authorization codes: at most 60 s, redeemed by one conditional UPDATE."""

    def __init__(self, clock: Clock, audit: AuditLog, tokens: TokenStore):
        self.clock = clock
        self.audit = audit
        self.tokens = tokens

    def save(self, code: str, *, client_id: str, user_id: int, redirect_uri: str, scope: str,
             nonce: str | None, code_challenge: str | None, code_challenge_method: str | None, session,
             login_ticket: str | None = None, claims: dict | None = None, dpop_jkt: str | None = None) -> None:
        """Raises TicketSpent when `login_ticket` was used by another code (a race: the unique index decides)."""
        now = self.clock.now()
        db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - timedelta(hours=1)))
        db.session.add(AuthorizationCode(
            code_hash=token_hash(code),
            client_id=client_id,
            user_id=user_id,
            redirect_uri=redirect_uri,
            scope=scope,
            nonce=nonce or None,
            code_challenge=code_challenge or None,
            code_challenge_method=code_challenge_method or None,
            sid=session.id if session else None,
            auth_time=session.auth_time if session else now,
            acr=session.acr if session else "",
            amr=list(session.amr or []) if session else [],
            login_ticket=login_ticket,
            claims=claims,
            dpop_jkt=dpop_jkt or None,
            created_at=now,
            expires_at=now + timedelta(seconds=CODE_SECONDS),
        ))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if login_ticket is not None and self.ticket_spent(login_ticket):
                raise TicketSpent() from None
            raise

    def expire_for(self, user_id: int, client_id: str | None = None) -> int:
        """Codes not yet redeemed end now (the app's access removed, a password change); how many."""
        query = update(AuthorizationCode).where(AuthorizationCode.user_id == user_id,
                                                AuthorizationCode.used_at.is_(None),
                                                AuthorizationCode.expires_at > self.clock.now())
        if client_id is not None:
            query = query.where(AuthorizationCode.client_id == client_id)
        return db.session.execute(query.values(expires_at=self.clock.now())).rowcount

    def ticket_spent(self, ticket_id: str) -> bool:
        return db.session.scalar(
            select(AuthorizationCode.id).where(AuthorizationCode.login_ticket == ticket_id).limit(1)
        ) is not None

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        return (
            db.session.scalar(
                select(AuthorizationCode.id)
                .where(AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce)
                .limit(1)
            )
            is not None
        )

    def claim(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code's row, marked used in the still-open transaction; None if it cannot be redeemed.

        The conditional UPDATE is the single point of truth: of two redemptions,
        even at the same instant, exactly one changes the row. The row stays
        locked until the tokens are saved, so a second redemption sees the
        tokens of the first and revokes them.
        """
        if not isinstance(code, str) or not 0 < len(code) <= 256:
            return None
        hashed = token_hash(code)
        now = self.clock.now()
        db.session.commit()  # start the claim on a fresh snapshot (SQLite upgrades read locks badly)
        result = db.session.execute(
            update(AuthorizationCode)
            .where(
                AuthorizationCode.code_hash == hashed,
                AuthorizationCode.client_id == client_id,
                AuthorizationCode.used_at.is_(None),
                AuthorizationCode.expires_at > now,
            )
            .values(used_at=now)
        )
        if result.rowcount == 1:
            return db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == hashed))
        db.session.rollback()
        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == hashed))
        if row is not None and row.used_at is not None and row.client_id == client_id:
            revoked = self.tokens.revoke_for_code(row.id)
            record_revocation(self.audit, "oauth.code_replayed", client_id, f"code:{row.id}", revoked)
            log.warning("authorization code redeemed twice; revoked its tokens", extra={"client_id": client_id})
        return None
