"""Login transactions the broker runs for thin clients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UtcDateTime
from ..extensions import db


class BrokerTransaction(db.Model):
    """One login a thin client asked the broker to run: used once, within ten minutes.

    The handle and the state are checked, never read back, so only their keyed
    hashes are kept. The PKCE verifier must be read back to redeem the code, so
    it is sealed under the master key, bound to the transaction's handle hash.
    """

    __tablename__ = "broker_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    # Indexed so a state from another transaction can be told apart from one never issued.
    state_hmac: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000))
    nonce: Mapped[str] = mapped_column(String(64))
    # Exactly one of the two: the broker's own verifier, or the challenge the client brought.
    code_verifier_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
