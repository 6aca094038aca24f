"""Checks of authorization request parameters our own (Authlib checks the rest), written once
for the authorization endpoint and the pushed authorization request endpoint. Each takes the
request's parameters (a MultiDict) and raises InvalidRequestError with what to fix."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import InvalidRequestError

from .claims import CLAIM_SCOPES, ClaimsRequestError, parse_claims_request
from .dpop import thumbprint_of

RESPONSE_MODES = ("query", "form_post")


def response_mode(values) -> str:
    """`query` (the default for response_type=code) or `form_post` (OAuth 2.0 Form Post Response
    Mode); any other mode is refused, not silently answered in another one."""
    mode = values.get("response_mode") or "query"
    if mode not in RESPONSE_MODES:
        shown = mode[:40] if re.fullmatch(r"[A-Za-z0-9._-]+", mode) else "(a value with other characters)"
        raise InvalidRequestError(f"The response_mode {shown} is not supported; use query or form_post.")
    return mode


def max_age(values) -> int | None:
    raw = values.get("max_age")
    if raw in (None, ""):
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise InvalidRequestError("max_age must be a whole number of seconds.")
    return int(raw)


def claims_request(values, client) -> dict[str, list[str]] | None:
    """The claims request parameter (OIDC Core 5.5), limited to the claims of scopes the client is
    registered for; InvalidRequestError (sent back to the client) when it is malformed."""
    try:
        requested = parse_claims_request(values.get("claims"))
    except ClaimsRequestError as exc:
        raise InvalidRequestError(str(exc)) from None
    if requested is None:
        return None
    allowed = set((client.get_allowed_scope(client.row.scope) or "").split())
    return {target: [name for name in names if CLAIM_SCOPES[name] in allowed] for target, names in requested.items()}


def dpop_jkt(values) -> str | None:
    """RFC 9449 §10: the thumbprint of the DPoP key the code must be redeemed with."""
    value = values.get("dpop_jkt")
    if value is None:
        return None
    if not thumbprint_of(value):
        raise InvalidRequestError("dpop_jkt must be the JWK SHA-256 thumbprint of the DPoP key: 43 base64url "
                                  "characters (RFC 7638).")
    return value


# What the server keeps or sends back of a request's own values: a code keeps the nonce, the
# redirect carries the state (a longer one could only come through a push: no URL carries it).
LIMITS = {"state": 2048, "nonce": 512}


def lengths(values) -> None:
    for name, limit in LIMITS.items():
        value = values.get(name)
        if value is not None and len(value) > limit:
            raise InvalidRequestError(f"The {name} is longer than {limit} characters.")
