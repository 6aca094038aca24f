"""API-key logins in the identity chain: `Authorization: pkid-…:secret` (also as `Bearer pkid-…:secret`),
Basic, and the headers of AUTHSERVER_KEY_HEADERS (default `X-API-Key`)."""

from __future__ import annotations

import base64
import binascii

from authserver.identity import AuthenticationFailed, Identity, Via

from .keyformat import looks_like_key_id
from .service import INVALID_KEY, InvalidKey, KeyService


def key_identity(verified) -> Identity:
    """Who a verified key answers as: its owner, with the key's scopes, never asked for TOTP."""
    return Identity(
        profile=verified.owner,
        load_user=lambda: verified.user,
        auth_method="api_key",
        via=Via.API_KEY,
        scopes=verified.scopes,
        key_id=verified.key_id,
    )


def presented_key(req, headers: tuple[str, ...] = ("X-API-Key",)) -> str | None:
    """The `pkid-…:secret` this request carries, None when it carries no key: in Authorization
    or in one of `headers` (AUTHSERVER_KEY_HEADERS, e.g. X-API-Key or Piwigo's X-PIWIGO-API).

    A key in several headers must be the same key: two different credentials
    are refused rather than one silently preferred.
    """
    found = []
    authorization = req.headers.get("Authorization", "")
    if looks_like_key_id(authorization):
        found.append(authorization.strip())
    elif authorization[:7].lower() == "bearer " and looks_like_key_id(authorization[7:].strip()):
        found.append(authorization[7:].strip())  # clients that only know bearer credentials
    elif authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        if looks_like_key_id(decoded):
            found.append(decoded)
    for name in headers:
        header = req.headers.get(name)
        if header is not None:
            found.append(header.strip())
    if not found:
        return None
    if len(set(found)) > 1:
        raise AuthenticationFailed("Send one API key, in one header.", "invalid_key")
    return found[0]


class ApiKeyStrategy:
    name = "api_key"

    def __init__(self, keys: KeyService, headers: tuple[str, ...] = ("X-API-Key",)):
        self.keys = keys
        self.headers = headers

    def authenticate(self, req, resource=None) -> Identity | None:
        token = presented_key(req, self.headers)
        if token is None:
            return None
        try:
            verified = self.keys.authenticate_token(token, ip=req.remote_addr or "")
        except InvalidKey:
            # One answer for every cause: which check failed is in the audit log only.
            raise AuthenticationFailed(INVALID_KEY, "invalid_key") from None
        return key_identity(verified)
