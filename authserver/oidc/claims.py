"""Which user claims a scope releases, and per-client extra claims.

Pure functions over a user and a scope string: used by ID tokens, userinfo
and JWT access tokens alike, so they never disagree.
"""

from __future__ import annotations

import json

from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core import UserInfo

from ..accounts.service import PROFILE_CLAIMS

# Scopes this server understands itself; clients may also be given their own.
STANDARD_SCOPES = ("openid", "profile", "email", "groups", "offline_access")

SCOPE_CLAIMS = {
    "profile": ("name", "preferred_username", *PROFILE_CLAIMS, "updated_at"),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}

CLAIMS_SUPPORTED = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid", "azp",
    "name", "preferred_username", *PROFILE_CLAIMS, "updated_at", "email", "email_verified", "groups",
)

# Claims of ID tokens, access tokens and userinfo that an extra claim may not stand in for,
# beyond CLAIMS_SUPPORTED: JWT (RFC 7519), OAuth (RFC 9068, RFC 8693, RFC 9449) and OpenID names.
RESERVED_CLAIMS = frozenset({
    "jti", "nbf", "typ", "cty", "scope", "client_id", "cnf", "act", "may_act", "roles", "entitlements",
    "c_hash", "s_hash", "updated_at", "phone_number", "phone_number_verified", "address", "given_name",
    "family_name", "middle_name", "nickname", "profile", "picture", "website", "gender", "birthdate",
    "zoneinfo", "locale", "events", "sub_jwk", "_claim_names", "_claim_sources",
})

# Kinds of per-client extra claim, with what their arguments mean.
EXTRA_CLAIM_KINDS = {
    "admin_flag": "two values: for administrators, for everyone else (e.g. admin_flag:admin:user)",
    "attribute": "the name of a user attribute (e.g. attribute:quota_gb)",
    "static": "a fixed string (e.g. static:gallery)",
}


class ExtraClaimError(ValueError):
    """An extra-claim definition is malformed; the message says how to write it."""


def parse_extra_claim(text: str) -> tuple[str, dict]:
    """`NAME=KIND:ARG[:ARG]` into (name, definition)."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    kind, _, rest = spec.partition(":")
    if not sep or not name or not name.replace("_", "").isalnum():
        raise ExtraClaimError(
            f"Write an extra claim as NAME=KIND:ARG, for example immich_role=admin_flag:admin:user (got {text!r})."
        )
    if name in CLAIMS_SUPPORTED or name in RESERVED_CLAIMS:
        raise ExtraClaimError(f"The claim {name!r} is a standard claim and cannot be redefined.")
    if kind == "admin_flag":
        admin, colon, user = rest.partition(":")
        if not colon or not admin or not user:
            raise ExtraClaimError("admin_flag needs two values: admin_flag:ADMIN_VALUE:USER_VALUE.")
        return name, {"kind": kind, "admin": admin, "user": user}
    if kind == "attribute" and rest:
        return name, {"kind": kind, "name": rest}
    if kind == "static" and rest:
        return name, {"kind": kind, "value": rest}
    kinds = "; ".join(f"{k}: {v}" for k, v in EXTRA_CLAIM_KINDS.items())
    raise ExtraClaimError(f"Unknown or incomplete extra claim {text!r}. Kinds: {kinds}.")


def extra_claim_value(definition: dict, user):
    kind = definition.get("kind")
    if kind == "admin_flag":
        return definition["admin"] if user.is_admin else definition["user"]
    if kind == "attribute":
        return (user.attributes or {}).get(definition["name"])
    if kind == "static":
        return definition["value"]
    return None


# The scope whose consent covers each user claim (for the claims request parameter).
CLAIM_SCOPES = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
CLAIMS_REQUEST_TARGETS = ("userinfo", "id_token")


class ClaimsRequestError(ValueError):
    """The claims request parameter is malformed; the message says how."""


def parse_claims_request(text: str | None) -> dict[str, list[str]] | None:
    """OpenID Connect Core 5.5: `{"userinfo": {...}, "id_token": {...}}`, each member naming a claim
    with null or `{"essential": bool, "value": …, "values": […]}`; answered as the user claims this
    server has, per target (others are ignored, as the spec asks). ClaimsRequestError if malformed."""
    if text is None or text == "":
        return None
    if len(text) > 4096:
        raise ClaimsRequestError("The claims parameter is longer than 4096 characters.")
    try:
        document = json.loads(text)
    except ValueError:
        raise ClaimsRequestError("The claims parameter is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ClaimsRequestError("The claims parameter must be a JSON object with userinfo and id_token members.")
    parsed: dict[str, list[str]] = {}
    for target in CLAIMS_REQUEST_TARGETS:
        members = document.get(target)
        if members is None:
            continue
        if not isinstance(members, dict):
            raise ClaimsRequestError(f"The claims parameter's {target} member must be a JSON object.")
        for wanted in members.values():
            if wanted is not None and not isinstance(wanted, dict):
                raise ClaimsRequestError(
                    "In the claims parameter, each claim is null or an object such as {essential: true}.")
            if isinstance(wanted, dict) and not isinstance(wanted.get("essential", False), bool):
                raise ClaimsRequestError("In the claims parameter, essential is true or false.")
        parsed[target] = sorted(name for name in members if name in CLAIM_SCOPES)
    return parsed


def claims_scopes(requested: dict[str, list[str]] | None) -> set[str]:
    """The scopes that cover the claims requested one by one (consent is given per scope)."""
    return {CLAIM_SCOPES[name] for names in (requested or {}).values() for name in names}


def user_claims(user, scope: str | None, extra_claims: dict | None = None, requested=()) -> UserInfo:
    """`sub` always; the standard claims of each granted scope, and those `requested` one by one
    (the claims parameter; the caller limits them to what the user consented to); the client's
    extra claims."""
    scopes = set(scope_to_list(scope) or ())
    wanted = {claim for group in scopes for claim in SCOPE_CLAIMS.get(group, ())} | set(requested)
    available = {"name": user.name, "preferred_username": user.username,
                 "updated_at": int(user.updated_at.timestamp()), "groups": list(user.groups or [])}
    available.update((claim, value) for claim, value in (user.profile or {}).items() if claim in PROFILE_CLAIMS)
    if user.email:
        available.update(email=user.email, email_verified=bool(user.email_verified))
    info = UserInfo(sub=user.sub)
    for claim in SCOPE_CLAIMS["profile"] + SCOPE_CLAIMS["email"] + SCOPE_CLAIMS["groups"]:
        if claim in wanted and claim in available and available[claim] not in ("", None):
            info[claim] = available[claim]
    if "openid" in scopes:
        for name, definition in (extra_claims or {}).items():
            value = extra_claim_value(definition, user)
            if value is not None:
                info[name] = value
    return info
