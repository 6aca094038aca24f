"""Every capability writes what it did here; rows are only ever inserted."""

from __future__ import annotations

import logging
from typing import Any

from ..clock import Clock
from ..extensions import db
from ..layers import current_request
from .models import AuditEvent

log = logging.getLogger("authserver.audit")


class AuditLog:
    def __init__(self, clock: Clock):
        self.clock = clock

    def record(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        commit: bool = False,
    ) -> AuditEvent:
        """Add an event to the current transaction (committed with the change it describes).

        `details` must never hold a secret: name keys by `key_id`, users by name.
        """
        ip, agent = "", ""
        if (info := current_request()) is not None:
            ip, agent = info.ip, info.user_agent[:300]
        event = AuditEvent(
            at=self.clock.now(),
            actor=actor[:200],
            action=action,
            target=target[:200],
            outcome=outcome,
            ip=ip,
            user_agent=agent,
            details=details or {},
        )
        db.session.add(event)
        if commit:
            db.session.commit()
        log.info("audit", extra={"audit": {"action": action, "actor": actor, "target": target, "outcome": outcome}})
        return event

    def query(self, *, actor=None, action=None, target=None, limit=100, before_id=None) -> list[AuditEvent]:
        stmt = db.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if actor:
            stmt = stmt.where(AuditEvent.actor == actor)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        if target:
            stmt = stmt.where(AuditEvent.target == target)
        if before_id:
            stmt = stmt.where(AuditEvent.id < before_id)
        return list(db.session.scalars(stmt))
