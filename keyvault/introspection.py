"""API keys as a kind of token for RFC 7662 introspection by services."""

from __future__ import annotations

from dataclasses import dataclass

from .keyformat import KEY_ID_PREFIX
from .service import KeyService


@dataclass(frozen=True)
class IntrospectedKey:
    """A verified `pkid-…:secret`; checks already ran, so it is neither expired nor revoked."""

    fields: dict

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return False

    def meant_for(self, client_id: str) -> bool:
        """Keys are credentials for every resource server of the photo services."""
        return True

    def introspect(self, issuer: str) -> dict:
        return {**self.fields, "iss": issuer}


class KeyTokenKind:
    """Recognises `pkid-…:secret`; anything else is left to the next kind."""

    def __init__(self, keys: KeyService):
        self.keys = keys

    def find(self, value: str, hint: str | None, *, address: str, caller=None) -> IntrospectedKey | None:
        """Raises TooManyAttempts when the caller's address has guessed too often. (The caller's
        client row was confirmed by the OAuth tokens' read, which runs first.)"""
        if not isinstance(value, str) or not value.startswith(KEY_ID_PREFIX):
            return None
        fields = self.keys.introspect(value, caller_address=address)
        return IntrospectedKey(fields) if fields else None
