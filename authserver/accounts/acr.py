"""Authentication context classes: what `acr` values mean here and which a request asks for.

"1": one factor (a password). "2": two factors (password and TOTP). A request's
`acr_values` lists what the client would accept, in order of preference (OIDC Core
3.1.2.1); the server must meet the weakest of the values it knows, and ignores the
values it does not know (the claim is voluntary unless requested as essential).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

ACR_PASSWORD = "1"
ACR_MFA = "2"
RANKS = {ACR_PASSWORD: 1, ACR_MFA: 2}
SUPPORTED = tuple(RANKS)


def required_acr(acr_values: str | None) -> str | None:
    """The weakest known class the request accepts; None when it names none we know."""
    known = [value for value in (acr_values or "").split() if value in RANKS]
    if not known:
        return None
    return min(known, key=RANKS.__getitem__)


def satisfies(acr: str | None, wanted: str | None) -> bool:
    return wanted is None or RANKS.get(acr or "", 0) >= RANKS[wanted]


def wants_second_factor(next_url: str | None) -> bool:
    """Is the page a login returns to an authorization request that needs two factors?

    A hint for the login flow only (ask for the second factor now); the authorization
    endpoint itself decides from the session's own acr.
    """
    if not next_url or not next_url.startswith("/oauth/authorize?"):
        return False
    values = parse_qs(urlsplit(next_url).query).get("acr_values", [])
    return any(required_acr(value) == ACR_MFA for value in values)
