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

    def introspect(self, issuer: str) -> dict:
        return {**self.fields, "iss": issuer}


class KeyTokenKind:
    """Recognises `pkid-…:secret`; anything else is left to the next kind."""

    def __init__(self, keys: KeyService):
        self.keys = keys

    def find(self, value: str, hint: str | None) -> IntrospectedKey | None:
        if not isinstance(value, str) or not value.startswith(KEY_ID_PREFIX):
            return None
        # The caller is a service, not the key's holder: its address says nothing about the
        # holder's, so a key limited to address ranges is not active here.
        fields = self.keys.introspect(value, ip=None)
        return IntrospectedKey(fields) if fields else None
