"""Consents: asked once per client and scope set, remembered, revocable."""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749.util import scope_to_list
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit.service import AuditLog
from ..clock import Clock
from ..extensions import db
from .models import Consent, OAuthClient
from .tokens import TokenStore

log = logging.getLogger("authserver.oidc")

SCOPE_DESCRIPTIONS = {
    "openid": "sign you in and know who you are",
    "profile": "your name and username",
    "email": "your email address",
    "groups": "the groups you belong to",
    "offline_access": "stay connected while you are away",
}


def described_scopes(scope: str) -> list[tuple[str, str]]:
    """Each scope with what it lets the app do, for a consent page ("" when we cannot say)."""
    return [(s, SCOPE_DESCRIPTIONS.get(s, "")) for s in scope.split()]


class ConsentStore:
    def __init__(self, clock: Clock, audit: AuditLog, tokens: TokenStore):
        self.clock = clock
        self.audit = audit
        self.tokens = tokens
        self._revoke_listeners = []

    def on_revoke(self, listener) -> None:
        """Call `listener(user_id, client_id)` when a consent is withdrawn, in its transaction."""
        self._revoke_listeners.append(listener)

    def covers(self, user_id: int, client_id: str, scope: str) -> bool:
        row = self._get(user_id, client_id)
        if row is None:
            return False
        return set(scope_to_list(scope) or ()) <= set(scope_to_list(row.scope) or ())

    def grant(self, user, client_id: str, scope: str) -> None:
        now = self.clock.now()
        row = self._get(user.id, client_id)
        scopes = scope_to_list(scope) or []
        if row is None:
            db.session.add(Consent(user_id=user.id, client_id=client_id, scope=" ".join(scopes),
                                   created_at=now, updated_at=now))
        else:
            merged = list(dict.fromkeys((scope_to_list(row.scope) or []) + scopes))
            row.scope = " ".join(merged)
            row.updated_at = now
        self.audit.record("consent.grant", actor=f"user:{user.username}", target=f"client:{client_id}",
                          details={"scope": " ".join(scopes)})
        try:
            db.session.commit()
        except IntegrityError:  # the same consent given twice at once: the other one won
            db.session.rollback()

    def list_for(self, user_id: int) -> list[tuple[Consent, OAuthClient | None]]:
        rows = db.session.execute(
            select(Consent, OAuthClient)
            .outerjoin(OAuthClient, OAuthClient.client_id == Consent.client_id)
            .where(Consent.user_id == user_id)
            .order_by(Consent.created_at)
        )
        return [(consent, client) for consent, client in rows]

    def revoke(self, user, client_id: str) -> bool:
        """Forget the consent and revoke the client's tokens for this user."""
        row = self._get(user.id, client_id)
        if row is None:
            return False
        db.session.delete(row)
        revoked = self.tokens.revoke_for_user_client(user.id, client_id)
        for listener in self._revoke_listeners:
            listener(user.id, client_id)
        self.audit.record("consent.revoke", actor=f"user:{user.username}", target=f"client:{client_id}",
                          details={"revoked_tokens": revoked})
        db.session.commit()
        return True

    def _get(self, user_id: int, client_id: str) -> Consent | None:
        return db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
