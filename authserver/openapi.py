"""The OpenAPI 3.1 description of every JSON route under /api/, served at /api/openapi.json.

Plain dicts, no Flask: `document(base_url)` assembles the module's constants. Each schema
says what the code really accepts and answers (tests/api/test_fuzz.py holds the server to it
with schemathesis): a request constraint is written down only where the server refuses what
breaks it, a response member is `required` only where it is always present, and nullable
members are `["…", "null"]`. Error answers are the `Error` object of authserver/errors.py.
"""

from __future__ import annotations

import copy
from typing import Any

OPENAPI_VERSION = "3.1.0"

# -- helpers: plain JSON Schema and OpenAPI fragments --------------------------


def schema_ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def response_ref(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


def header_ref(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


def nullable(kind: str, **constraints: Any) -> dict:
    """A member that may be left out or sent as null (the server reads null as absent)."""
    return {"type": [kind, "null"], **constraints}


def json_body(schema: dict, *, required: bool = True, description: str | None = None) -> dict:
    body: dict[str, Any] = {"required": required, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def json_answer(description: str, schema: dict, headers: dict | None = None) -> dict:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def error_answer(description: str, codes: list[str], headers: dict | None = None) -> dict:
    """An Error answer whose `error` is one of `codes`."""
    schema = {"allOf": [schema_ref("Error"), {"properties": {"error": {"enum": codes}}}]}
    return json_answer(description, schema, headers)


def empty_answer(description: str, headers: dict | None = None) -> dict:
    """No body: forward-auth's answers carry `Content-Type: text/html; charset=utf-8` and zero bytes."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string", "maxLength": 0}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
STRINGS = {"type": "array", "items": {"type": "string"}}

KEY_ID_PATTERN = "^pkid-[0-9]{8}-[0-9A-Za-z]{21}$"
SECRET_PATTERN = "^[0-9A-Za-z]{43}$"
RECOVERY_CODE_PATTERN = "^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$"

# -- who may call ----------------------------------------------------------------

SESSION_COOKIE = "authserver_session"

SECURITY_SCHEMES = {
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": (
            "The SSO session cookie set by POST /api/session/login (or the browser login at /login). Its name is "
            f"`{SESSION_COOKIE}` on an http issuer, `__Host-{SESSION_COOKIE}` on https, and "
            f"`__Secure-{SESSION_COOKIE}` on https when AUTHSERVER_SESSION_COOKIE_DOMAIN shares it with a parent "
            "domain. A write (POST, PUT, PATCH, DELETE) riding on it must be sent with "
            "`Content-Type: application/json` (a DELETE without a body excepted), else 415, and, if it carries an "
            "`Origin` header, from this server's own origin, else 403 `cross_origin`."
        ),
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": (
            "An API key as `pkid-…:secret` (docs/keys.md). The same key is also accepted as the whole "
            "`Authorization` header (`Authorization: pkid-…:secret` or `Bearer pkid-…:secret`), as HTTP Basic "
            "(see `basic`), or in the other headers the server lists in AUTHSERVER_KEY_HEADERS (e.g. `X-PIWIGO-API`). "
            "A key header "
            "wins over a session cookie; two different keys in one request are refused (401 `invalid_key`). "
            "Failed keys are counted per address: past 30 a minute, 429 with Retry-After."
        ),
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An OAuth access token this server issued to a first-party client (its audience names this server's "
            "API). Other tokens, expired or revoked ones, and client-credentials tokens are 401 `invalid_token`."
        ),
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "An API key as HTTP Basic credentials: the key id as user name, the secret as password.",
    },
}

ANY_CREDENTIAL = [{"sessionCookie": []}, {"apiKeyHeader": []}, {"bearer": []}, {"basic": []}]
NO_CREDENTIAL: list[dict] = [{}]
OWN_CREDENTIAL = [{"sessionCookie": []}, {"apiKeyHeader": []}, {"basic": []}]

# -- components: schemas ----------------------------------------------------------

IDENTITY_PROPERTIES = {
    "sub": {"type": "string", "description": "The user's stable, opaque subject identifier."},
    "username": {"type": "string"},
    "email": {"type": "string", "description": "Empty when the account has no address."},
    "name": {"type": "string"},
    "groups": STRINGS,
    "is_admin": {"type": "boolean"},
    "auth_method": {
        "type": "string",
        "enum": ["password", "password+totp", "password+passkey", "passkey", "api_key", "oauth_token"],
        "description": "How the credential was obtained.",
    },
    "amr": {**STRINGS, "description": "Authentication methods of the login (`pwd`, `otp`, `hwk`, `user`, `mfa`)."},
    "scopes": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "The credential's scopes, sorted; null for a password session (everything the user may do).",
    },
    "key_id": {"type": ["string", "null"], "description": "The API key used (or that opened the session)."},
    "client_id": {"type": ["string", "null"], "description": "The OAuth client a bearer token was issued to."},
}

KEY_PROPERTIES = {
    "key_id": {"type": "string", "pattern": KEY_ID_PATTERN},
    "name": {"type": "string"},
    "owner": {"type": "string", "description": "The owner's username."},
    "scopes": STRINGS,
    "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
    "allowed_cidrs": {**STRINGS, "description": "Normalised CIDR networks; empty: any address."},
    "expires_at": NULLABLE_DATE_TIME,
    "created_at": DATE_TIME,
    "created_by": {"type": "string", "description": "The actor that minted it (`user:…`, `key:…`, `cli`)."},
    "rotated_at": NULLABLE_DATE_TIME,
    "previous_secret_valid_until": {
        **NULLABLE_DATE_TIME,
        "description": "While a rotation's grace period runs: when the previous secret stops working.",
    },
    "last_used_at": NULLABLE_DATE_TIME,
    "last_used_ip": {"type": ["string", "null"]},
    "revoked_at": NULLABLE_DATE_TIME,
}

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "description": "Every error answer (authserver/errors.py): a code to act on and one sentence for people.",
        "required": ["error", "error_description"],
        "properties": {
            "error": {"type": "string", "description": "A stable error code, e.g. `invalid_request`."},
            "error_description": {"type": "string", "description": "The cause and the fix, for people."},
        },
    },
    "Identity": {
        "type": "object",
        "description": "Who the caller is, as its credential established it.",
        "required": list(IDENTITY_PROPERTIES),
        "properties": IDENTITY_PROPERTIES,
    },
    "LoginRequest": {
        "type": "object",
        "description": (
            "A password login (with `totp_code` or `recovery_code` when the account has two-factor "
            "authentication), or an API key login: the key id as `username`, its secret as `password`. "
            "Other members are ignored."
        ),
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "maxLength": 200},
            "password": {"type": "string", "maxLength": 1024},
            "totp_code": nullable("string", maxLength=64, description="The current code of the authenticator app."),
            "recovery_code": nullable("string", maxLength=64, description="One of the account's recovery codes."),
            "pending_login": nullable("string", maxLength=128, description=(
                "With `webauthn`: the `pending_login` of the `second_factor_required` answer.")),
            "webauthn": {"type": ["object", "null"], "description": (
                "The platform passkey API's answer (PublicKeyCredential.toJSON(), an AuthenticationResponseJSON) "
                "to the `webauthn` options of the `second_factor_required` answer.")},
        },
    },
    "SecondFactorChoice": {
        "description": (
            "`second_factor_required`: the password is right and the account has a passkey. Pass `webauthn` to "
            "the platform's passkey API (navigator.credentials.get, Android Credential Manager, iOS "
            "ASAuthorization), then send the same login again with its answer as `webauthn` and this "
            "`pending_login` (five minutes, single use); or, when `methods` has `totp`, a `totp_code`."
        ),
        "allOf": [
            schema_ref("Error"),
            {
                "type": "object",
                "required": ["methods", "webauthn", "pending_login"],
                "properties": {
                    "error": {"const": "second_factor_required"},
                    "methods": {"type": "array", "items": {"enum": ["webauthn", "totp"]}},
                    "webauthn": {"type": "object", "description": "PublicKeyCredentialRequestOptionsJSON."},
                    "pending_login": {"type": "string"},
                },
            },
        ],
    },
    "LoginResult": {
        "description": "The new session's identity; its cookie is in Set-Cookie.",
        "allOf": [
            schema_ref("Identity"),
            {
                "type": "object",
                "required": ["session_id"],
                "properties": {
                    "session_id": {"type": "string", "description": "The session's public id (`sid` in ID tokens)."}
                },
            },
        ],
    },
    "LogoutResult": {
        "type": "object",
        "required": ["logged_out"],
        "properties": {"logged_out": {"const": True}},
    },
    "Consent": {
        "type": "object",
        "required": ["client_id", "client_name", "scopes", "granted_at", "updated_at"],
        "properties": {
            "client_id": {"type": "string"},
            "client_name": {"type": ["string", "null"], "description": "Null when the client no longer exists."},
            "scopes": STRINGS,
            "granted_at": DATE_TIME,
            "updated_at": DATE_TIME,
        },
    },
    "ConsentList": {
        "type": "object",
        "required": ["consents"],
        "properties": {"consents": {"type": "array", "items": schema_ref("Consent")}},
    },
    "ConsentRevoked": {
        "type": "object",
        "required": ["revoked", "client_id"],
        "properties": {"revoked": {"const": True}, "client_id": {"type": "string"}},
    },
    "TotpStatus": {
        "type": "object",
        "required": ["enabled", "confirmed_at", "pending", "recovery_codes_left", "required"],
        "properties": {
            "enabled": {"type": "boolean"},
            "confirmed_at": NULLABLE_DATE_TIME,
            "pending": {"type": "boolean", "description": "A set-up waits for its first code (for an hour)."},
            "recovery_codes_left": {"type": "integer", "minimum": 0},
            "required": {"type": "boolean", "description": "Policy requires two-factor authentication for this user."},
        },
    },
    "TotpEnrolRequest": {
        "type": "object",
        "description": (
            "Only read when two-factor authentication is on already: replacing the authenticator then needs a "
            "current `code` or a `recovery_code` (strings of up to 64 characters). For a first set-up the body "
            "may be left out; if sent, it must be a JSON object."
        ),
        "properties": {
            "code": {"description": "The current code of the authenticator app (string or null)."},
            "recovery_code": {"description": "A recovery code (string or null)."},
        },
    },
    "TotpEnrolment": {
        "type": "object",
        "description": "The new, pending secret: shown once, active after POST /api/me/totp/confirm.",
        "required": ["secret", "otpauth_uri", "qr_svg"],
        "properties": {
            "secret": {"type": "string", "pattern": "^[A-Z2-7]+$", "description": "Base32, unpadded."},
            "otpauth_uri": {"type": "string", "pattern": "^otpauth://totp/"},
            "qr_svg": {"type": "string", "description": "The otpauth URI as an inline SVG QR code."},
        },
    },
    "TotpConfirmRequest": {
        "type": "object",
        "required": ["code"],
        "properties": {"code": {"type": "string", "maxLength": 64}},
    },
    "TotpProof": {
        "type": "object",
        "description": 'The current factor: a code of the authenticator app, or a recovery code (one non-empty).',
        "anyOf": [{"required": ["code"]}, {"required": ["recovery_code"]}],
        "properties": {
            "code": nullable("string", maxLength=64),
            "recovery_code": nullable("string", maxLength=64),
        },
    },
    "RecoveryCodes": {
        "type": "array",
        "description": "Ten single-use recovery codes, shown this once.",
        "items": {"type": "string", "pattern": RECOVERY_CODE_PATTERN},
    },
    "TotpConfirmed": {
        "type": "object",
        "required": ["enabled", "recovery_codes"],
        "properties": {"enabled": {"const": True}, "recovery_codes": schema_ref("RecoveryCodes")},
    },
    "TotpRecoveryCodes": {
        "type": "object",
        "required": ["recovery_codes"],
        "properties": {"recovery_codes": schema_ref("RecoveryCodes")},
    },
    "TotpDisabled": {
        "type": "object",
        "required": ["enabled"],
        "properties": {"enabled": {"const": False}},
    },
    "TotpReset": {
        "type": "object",
        "required": ["username", "reset", "had_totp"],
        "properties": {
            "username": {"type": "string"},
            "reset": {"const": True},
            "had_totp": {"type": "boolean", "description": "Whether the user had started or finished a set-up."},
        },
    },
    "ApiKey": {
        "type": "object",
        "description": "An API key as the API shows it: everything but its secret and hashes.",
        "required": list(KEY_PROPERTIES),
        "properties": KEY_PROPERTIES,
    },
    "MintedApiKey": {
        "description": "A key with its secret: shown this once, never stored.",
        "allOf": [
            schema_ref("ApiKey"),
            {
                "type": "object",
                "required": ["secret"],
                "properties": {
                    "secret": {
                        "type": "string",
                        "pattern": SECRET_PATTERN,
                        "description": "Send `key_id:secret`; the last 6 characters are a checksum.",
                    }
                },
            },
        ],
    },
    "ApiKeyList": {
        "type": "object",
        "required": ["keys", "truncated"],
        "properties": {
            "keys": {"type": "array", "items": schema_ref("ApiKey"), "description": "Newest first."},
            "truncated": {"type": "boolean", "description": "More keys exist than `limit`."},
        },
    },
    "MintKeyRequest": {
        "type": "object",
        "description": "Unknown members are refused (400), so that a misspelt option is not dropped silently.",
        "required": ["name"],
        "additionalProperties": False,
        "not": {"required": ["cidrs", "allowed_cidrs"]},
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 200,
                "description": "1 to 100 printable characters once trimmed.",
            },
            "scopes": {
                "type": ["array", "null"],
                "maxItems": 50,
                "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "description": (
                    "From AUTHSERVER_KEY_SCOPES (default `profile photos:read photos:write admin`; `admin` for "
                    "administrators only), never beyond the calling credential's own. Default: every scope the "
                    "owner may hold except `admin`."
                ),
            },
            "expires_in_days": nullable("integer", minimum=1, maximum=3650),
            "cidrs": {
                "type": ["array", "null"],
                "maxItems": 32,
                "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "description": "IPv4/IPv6 networks or addresses the key works from; empty or absent: anywhere.",
            },
            "allowed_cidrs": {
                "type": ["array", "null"],
                "maxItems": 32,
                "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "description": "The same as `cidrs`, under the name answers use; send one of the two.",
            },
            "user": nullable(
                "string", maxLength=150, description="Whose key (administrators only); default: the caller's own."
            ),
        },
    },
    "RotateKeyRequest": {
        "type": "object",
        "description": "Other members are ignored.",
        "properties": {
            "grace_seconds": nullable(
                "integer",
                minimum=0,
                maximum=30 * 24 * 3600,
                description="How long the previous secret keeps working (default 0: it stops at once).",
            ),
        },
    },
    "AuditEvent": {
        "type": "object",
        "required": ["at", "action", "actor", "target", "outcome", "ip", "details"],
        "properties": {
            "at": DATE_TIME,
            "action": {"type": "string", "description": "e.g. `key.mint`, `key.use`, `admin.key.revoke`."},
            "actor": {"type": "string"},
            "target": {"type": "string"},
            "outcome": {"type": "string", "description": "`success`, `failure` or `warning`."},
            "ip": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "KeyAudit": {
        "type": "object",
        "required": ["key_id", "events"],
        "properties": {
            "key_id": {"type": "string", "pattern": KEY_ID_PATTERN},
            "events": {"type": "array", "items": schema_ref("AuditEvent"), "description": "Newest first, 200 at most."},
        },
    },
    "BrokerAuthorizeRequest": {
        "type": "object",
        "description": "Other members are ignored. docs/broker-errors.md explains every error.",
        "required": ["client_id", "redirect_uri"],
        "properties": {
            "client_id": {"type": "string", "maxLength": 64, "description": "A client registered with --broker."},
            "redirect_uri": {"type": "string", "maxLength": 2000, "description": "One of the client's, exactly."},
            "scope": nullable("string", maxLength=1000, description="Must include openid; default: the client's."),
            "state": nullable(
                "string", maxLength=512, pattern="^[\\x20-\\x7e]{1,512}$",
                description="Default: the broker makes one.",
            ),
            "code_challenge": nullable(
                "string", maxLength=128, pattern="^[A-Za-z0-9_-]{43}$",
                description="The app's own S256 challenge; default: the broker holds the PKCE verifier.",
            ),
            "code_challenge_method": {"enum": ["S256", None]},
        },
    },
    "BrokerStarted": {
        "type": "object",
        "required": ["authorization_url", "transaction", "state", "expires_in"],
        "properties": {
            "authorization_url": {"type": "string", "description": "Open it in a browser."},
            "transaction": {"type": "string", "description": "Send it back with the callback; shown once."},
            "state": {"type": "string"},
            "expires_in": {"type": "integer", "description": "Seconds the transaction lives (600)."},
        },
    },
    "BrokerCallbackRequest": {
        "type": "object",
        "description": (
            "The transaction handle and either the full `url` the app was redirected to, or its `code` and "
            "`state` (and `iss`, or `error` and `error_description`). With `url`, `code` and `state` must be "
            "absent or null and `iss`, `error` and `error_description` are not read. Other members are ignored."
        ),
        "properties": {
            "transaction": nullable("string", maxLength=256),
            "url": nullable("string", maxLength=8192),
            "code_verifier": nullable(
                "string", maxLength=128, description="Needed when the transaction was started with a code_challenge."
            ),
            "code": nullable("string", maxLength=256, description="The authorization code (without `url`)."),
            "state": nullable("string", maxLength=512, description="The state (without `url`)."),
            "iss": nullable("string", maxLength=2000, description="The issuer, RFC 9207 (without `url`)."),
            "error": nullable("string", maxLength=64, description="The login page's error code (without `url`)."),
            "error_description": nullable("string", maxLength=1000, description="Its description (without `url`)."),
        },
    },
    "BrokerUser": {
        "type": "object",
        "description": "The signed-in user, from the ID token's claims (null where a claim was not granted).",
        "required": ["sub", "username", "email", "name", "groups"],
        "properties": {
            "sub": {"type": "string"},
            "username": {"type": ["string", "null"]},
            "email": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "groups": {"type": ["array", "null"], "items": {"type": "string"}},
        },
    },
    "BrokerTokens": {
        "type": "object",
        "required": ["access_token", "id_token", "expires_in", "token_type", "scope", "user"],
        "properties": {
            "access_token": {"type": "string"},
            "refresh_token": {"type": "string", "description": "Only when a refresh token was issued."},
            "id_token": {"type": "string"},
            "expires_in": {"type": ["integer", "null"]},
            "token_type": {"type": "string"},
            "scope": {"type": "string"},
            "user": schema_ref("BrokerUser"),
        },
    },
    "OpenApiDocument": {"type": "object", "description": "This document."},
}

# -- components: headers ---------------------------------------------------------

HEADERS = {
    "RetryAfter": {
        "description": "Whole seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWWAuthenticate": {
        "description": "The challenge of a refused credential.",
        "required": True,
        "schema": {"type": "string", "enum": ['Bearer realm="authserver"']},
    },
    "SetSessionCookie": {
        "description": "The session cookie (HttpOnly, SameSite=Lax, Path=/; Secure on https).",
        "required": True,
        "schema": {"type": "string"},
    },
    "ClearSessionCookie": {
        "description": "The session cookie, expired.",
        "required": True,
        "schema": {"type": "string"},
    },
    "LoginLocation": {
        "description": "The login page, with `next` (the original URL) when its host is an allowed domain.",
        "required": True,
        "schema": {"type": "string"},
    },
}
# Forward-auth's identity headers, for the proxy to copy onto the upstream request.
HEADERS.update(
    {
        name: {
            "description": f"{what} (UTF-8 bytes, no control characters); empty under a bypass rule.",
            "required": True,
            "schema": {"type": "string"},
        }
        for name, what in (
            ("RemoteUser", "The username"),
            ("RemoteEmail", "The email address"),
            ("RemoteName", "The display name"),
            ("RemoteGroups", "The groups, comma-separated"),
            ("RemoteAuthMethod", "`password`, `password+totp`, `password+passkey`, `passkey`, `api_key` or "
             "`oauth_token`"),
        )
    }
)

RETRY = {"Retry-After": header_ref("RetryAfter")}
CHALLENGE = {"WWW-Authenticate": header_ref("WWWAuthenticate")}

# -- components: responses shared by many operations -------------------------------

RESPONSES = {
    "Unauthenticated": error_answer(
        "No valid credentials: none sent (`unauthorized`), a wrong, revoked, expired or out-of-range API key or "
        "two different keys (`invalid_key`), or an access token that is not valid here (`invalid_token`).",
        ["unauthorized", "invalid_key", "invalid_token"],
        CHALLENGE,
    ),
    "NotJson": error_answer(
        "The body is not `Content-Type: application/json` (or, for a write riding on the session cookie, the "
        "request is not sent as JSON).",
        ["unsupported_media_type"],
    ),
    "TooLarge": error_answer("The body is larger than 1 MiB.", ["request_too_large"]),
    "Throttled": error_answer(
        "Too many failed attempts from this address (API keys: 30 a minute); wait Retry-After seconds.",
        ["too_many_requests"],
        RETRY,
    ),
    "Unavailable": error_answer(
        "The database, the rate-limit store or the master key cannot be reached right now.",
        ["temporarily_unavailable"],
        RETRY,
    ),
    "Other": json_answer(
        "Any other error, e.g. 405 for another method, 400 for a value the database cannot hold.",
        schema_ref("Error"),
    ),
}


def with_common(responses: dict, *, body: bool = False, credential: bool = True) -> dict:
    """An operation's own answers, then the ones every route of its kind can give."""
    common: dict[str, Any] = {}
    if credential:
        common["401"] = response_ref("Unauthenticated")
    if body:
        common["413"] = response_ref("TooLarge")
        common["415"] = response_ref("NotJson")
    common["429"] = response_ref("Throttled")
    common["503"] = response_ref("Unavailable")
    common["default"] = response_ref("Other")
    return {**common, **responses}


def bad_request(*codes: str, what: str = "A member is missing, of the wrong type or out of range") -> dict:
    return error_answer(f"{what}; or the body is not a JSON object in valid UTF-8 JSON.",
                        ["invalid_request", "invalid_json", *codes])


COOKIE_WRITE_403 = "`cross_origin`: a cookie-authenticated write sent with another site's Origin."

# -- path parameters -------------------------------------------------------------------

KEY_ID_PARAMETER = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "description": "The key's public id; any other string is simply not found.",
    "schema": {"type": "string", "pattern": KEY_ID_PATTERN},
}
CLIENT_ID_PARAMETER = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "description": "The OAuth client's id (longer ids are not found).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
USERNAME_PARAMETER = {
    "name": "username",
    "in": "path",
    "required": True,
    "description": "The username, compared without regard to case.",
    "schema": {"type": "string", "minLength": 1},
}

IGNORED_BODY = json_body(
    {"description": "Not read."},
    required=False,
    description=(
        "Not read. A caller authenticated by the session cookie must still send `Content-Type: application/json` "
        "(a JSON body such as `{}`), the server's defence against cross-site form posts."
    ),
)

# -- the operations ------------------------------------------------------------------------

KEY_NOT_FOUND = error_answer(
    "No such key, or not one the caller may manage (deliberately the same answer).", ["not_found"]
)
KEY_FORBIDDEN = error_answer(
    "`forbidden`: managing keys needs a password session or a credential with the `admin` scope, and other "
    f"users' keys an administrator. {COOKIE_WRITE_403}",
    ["forbidden", "cross_origin"],
)
TOTP_FORBIDDEN_CODES = ["forbidden", "cross_origin"]
TOTP_FORBIDDEN = (
    "`forbidden`: two-factor authentication is managed from a session opened with a password only (not with an "
    f"API key, a key login or a token). {COOKIE_WRITE_403}"
)
CONSENT_FORBIDDEN = error_answer(
    "`forbidden`: an app's access token cannot manage connected apps; `insufficient_scope`: a scoped credential "
    f"needs the `admin` scope. {COOKIE_WRITE_403}",
    ["forbidden", "insufficient_scope", "cross_origin"],
)


def proxy_header(name: str, what: str) -> dict:
    """A header a reverse proxy sends forward-auth, believed only from AUTHSERVER_TRUSTED_PROXIES."""
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": f"{what} Read only from AUTHSERVER_TRUSTED_PROXIES."}


def forward_auth_operation(method: str, path: str) -> dict:
    nginx = path.endswith("auth-request")
    name = "authRequest" if nginx else "forwardAuth"
    operation_id = f"{name}{method.capitalize()}"
    parameters = [
        {
            "name": "rd",
            "in": "query",
            "required": False,
            "description": "Present (any value): answer a needed login with a redirect to the login page.",
            "schema": {"type": "string"},
        },
        proxy_header("X-Original-URL", "The original URL (nginx)."),
        proxy_header("X-Forwarded-Proto", "The original scheme (Traefik, Caddy)."),
        proxy_header("X-Forwarded-Host", "The original host; read with X-Forwarded-Proto."),
        proxy_header("X-Forwarded-Uri", "The original path and query, from /."),
    ]
    login_headers = {"Location": header_ref("LoginLocation")}
    unauthenticated = {
        "description": (
            "Nobody is logged in, or the credentials sent are wrong: the Error object with WWW-Authenticate."
            + (
                " When a redirect was asked for (`?rd`, or AUTHSERVER_FORWARD_AUTH_REDIRECT=browsers and an Accept "
                "naming text/html): an empty answer with `Location`, which nginx's `error_page 401 =302` turns into "
                "the browser's redirect."
                if nginx
                else ""
            )
        ),
        "headers": {
            "WWW-Authenticate": {**HEADERS["WWWAuthenticate"], "required": not nginx},
            **({"Location": {**HEADERS["LoginLocation"], "required": False}} if nginx else {}),
        },
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        schema_ref("Error"),
                        {"properties": {"error": {"enum": ["unauthorized", "invalid_key", "invalid_token"]}}},
                    ]
                }
            },
            **({"text/html": {"schema": {"type": "string", "maxLength": 0}}} if nginx else {}),
        },
    }
    responses: dict[str, Any] = {
        "200": empty_answer(
            "The rule lets the caller through: the identity in the `Remote-*` headers, for the proxy to copy "
            "onto the upstream request.",
            {
                "Remote-User": header_ref("RemoteUser"),
                "Remote-Email": header_ref("RemoteEmail"),
                "Remote-Name": header_ref("RemoteName"),
                "Remote-Groups": header_ref("RemoteGroups"),
                "Remote-Auth-Method": header_ref("RemoteAuthMethod"),
            },
        ),
        "400": error_answer(
            "A trusted proxy sent an original URL that cannot be parsed; the description names the header.",
            ["invalid_request"],
        ),
        "401": unauthenticated,
        "403": error_answer(
            "The rule refuses this caller: `deny`, not in its groups, API keys not accepted, or two-factor login "
            "needed (a redirect instead when one was asked for).",
            ["forbidden"],
        ),
        "413": response_ref("TooLarge"),
        "429": response_ref("Throttled"),
        "503": response_ref("Unavailable"),
        "default": response_ref("Other"),
    }
    if not nginx:
        responses["302"] = empty_answer(
            "A login (or a two-factor login) is needed and a redirect was asked for (`?rd`, or "
            "AUTHSERVER_FORWARD_AUTH_REDIRECT=browsers and an Accept naming text/html).",
            login_headers,
        )
        if method in ("post", "put", "patch", "delete"):
            responses["303"] = empty_answer(
                "The same redirect as 302, for a forwarded POST, PUT, PATCH or DELETE (every 302 after a write "
                "is sent as 303).",
                login_headers,
            )
    return {
        "operationId": operation_id,
        "summary": (
            "Forward-auth check for nginx auth_request" if nginx else "Forward-auth check for Traefik and Caddy"
        ),
        "description": (
            "A reverse proxy asks whether the request it is about to pass on may pass, with the credentials that "
            "request carried (session cookie, API key or bearer token, or none); the access rules decide "
            "(docs/forward-auth.md). Every method is checked alike; HEAD answers as GET without a body."
        ),
        "tags": ["forward-auth"],
        "security": [*NO_CREDENTIAL, *ANY_CREDENTIAL],
        "parameters": parameters,
        "responses": responses,
    }


def forward_auth_path(path: str) -> dict:
    return {method: forward_auth_operation(method, path)
            for method in ("get", "post", "put", "patch", "delete", "options")}


PATHS: dict[str, dict] = {
    "/api/session/login": {
        "post": {
            "operationId": "login",
            "summary": "Log in and get a session cookie",
            "description": (
                "Anyone may call it: a username and password (and a TOTP or recovery code when the account has "
                "two-factor authentication), or an API key as username and secret as password, open an SSO session "
                "whose cookie is set. A session this client had until now ends."
            ),
            "tags": ["session"],
            "security": [*NO_CREDENTIAL, {"sessionCookie": []}],
            "requestBody": json_body(schema_ref("LoginRequest")),
            "responses": with_common(
                {
                    "200": json_answer(
                        "Logged in.", schema_ref("LoginResult"), {"Set-Cookie": header_ref("SetSessionCookie")}
                    ),
                    "400": bad_request(),
                    "401": {
                        "description": (
                            "`invalid_credentials`: the username or password is wrong (or the account disabled); "
                            "`totp_required`: send `totp_code` or `recovery_code` (accounts whose only second "
                            "factor is TOTP); `second_factor_required`: the account has a passkey, see "
                            "SecondFactorChoice; `invalid_totp`, `invalid_recovery_code`: the code is wrong or used; "
                            "`passkey_rejected`, `passkey_challenge_expired`: the passkey answer was refused, or "
                            "its pending login expired or was used (start again); `invalid_key`: the API key is not "
                            "valid (with WWW-Authenticate)."
                        ),
                        "content": {"application/json": {"schema": {"oneOf": [
                            schema_ref("SecondFactorChoice"),
                            {"allOf": [schema_ref("Error"), {"properties": {"error": {"enum": [
                                "invalid_credentials", "totp_required", "invalid_totp", "invalid_recovery_code",
                                "totp_not_enrolled", "invalid_key", "passkey_rejected", "passkey_challenge_expired",
                            ]}}}]},
                        ]}}},
                    },
                    "403": error_answer(
                        "Policy requires two-factor authentication and the account has none: set it up in a "
                        "browser at /login first.",
                        ["totp_enrolment_required"],
                    ),
                    "429": error_answer(
                        "Too many attempts for this account or from this address; wait Retry-After seconds.",
                        ["too_many_requests"],
                        RETRY,
                    ),
                },
                body=True,
                credential=False,
            ),
        },
    },
    "/api/session/logout": {
        "post": {
            "operationId": "logout",
            "summary": "End the session",
            "description": (
                "Any authenticated caller: ends the session the cookie belongs to (if the request rode on one) "
                "and clears the cookie."
            ),
            "tags": ["session"],
            "security": ANY_CREDENTIAL,
            "requestBody": IGNORED_BODY,
            "responses": with_common(
                {
                    "200": json_answer(
                        "Logged out.", schema_ref("LogoutResult"), {"Set-Cookie": header_ref("ClearSessionCookie")}
                    ),
                    "403": error_answer(COOKIE_WRITE_403, ["cross_origin"]),
                },
                body=True,
            ),
        },
    },
    "/api/me": {
        "get": {
            "operationId": "me",
            "summary": "Who am I",
            "description": "Any authenticated caller: the identity its credential stands for.",
            "tags": ["account"],
            "security": ANY_CREDENTIAL,
            "responses": with_common(
                {"200": json_answer("The caller's identity.", schema_ref("Identity")),
                 "413": response_ref("TooLarge")},
            ),
        },
    },
    "/api/me/consents": {
        "get": {
            "operationId": "listConsents",
            "summary": "List the apps the user consented to",
            "description": (
                "The user's own consents to OAuth clients, oldest first. A password session, an API key, or any "
                "credential with the `admin` scope; not an app's access token."
            ),
            "tags": ["consents"],
            "security": OWN_CREDENTIAL,
            "responses": with_common(
                {"200": json_answer("The consents.", schema_ref("ConsentList")), "403": CONSENT_FORBIDDEN},
            ),
        },
    },
    "/api/me/consents/{client_id}": {
        "delete": {
            "operationId": "revokeConsent",
            "summary": "Revoke an app's consent",
            "description": (
                "Forgets the consent and revokes the client's tokens for the user; the app asks again next time. "
                "A password session, an API key, or any credential with the `admin` scope; not an app's token."
            ),
            "tags": ["consents"],
            "security": OWN_CREDENTIAL,
            "parameters": [CLIENT_ID_PARAMETER],
            "responses": with_common(
                {
                    "200": json_answer("Revoked.", schema_ref("ConsentRevoked")),
                    "403": CONSENT_FORBIDDEN,
                    "404": error_answer("The user has not consented to this client.", ["not_found"]),
                    "415": response_ref("NotJson"),
                },
            ),
        },
    },
    "/api/me/totp": {
        "get": {
            "operationId": "totpStatus",
            "summary": "Two-factor status",
            "description": "The signed-in user's two-factor status. Password sessions only (other credentials: 403).",
            "tags": ["totp"],
            "security": ANY_CREDENTIAL,
            "responses": with_common(
                {
                    "200": json_answer("The status.", schema_ref("TotpStatus")),
                    "403": error_answer(TOTP_FORBIDDEN, TOTP_FORBIDDEN_CODES),
                },
            ),
        },
        "post": {
            "operationId": "totpEnrol",
            "summary": "Start a two-factor set-up",
            "description": (
                "A new pending authenticator secret, active once confirmed; replacing an active one needs its "
                "current code or a recovery code. Password sessions only (other credentials: 403)."
            ),
            "tags": ["totp"],
            "security": ANY_CREDENTIAL,
            "requestBody": json_body(schema_ref("TotpEnrolRequest"), required=False),
            "responses": with_common(
                {
                    "200": json_answer("The pending secret, shown once.", schema_ref("TotpEnrolment")),
                    "400": bad_request(
                        "invalid_totp", "invalid_recovery_code",
                        what="Two-factor authentication is on and no current code was sent, or it is wrong or used",
                    ),
                    "403": error_answer(
                        f"{TOTP_FORBIDDEN} `current_factor_required`: a current code is needed.",
                        [*TOTP_FORBIDDEN_CODES, "current_factor_required"],
                    ),
                    "429": error_answer(
                        "Too many code attempts; wait Retry-After seconds.", ["too_many_requests"], RETRY
                    ),
                },
                body=True,
            ),
        },
        "delete": {
            "operationId": "totpDisable",
            "summary": "Turn two-factor authentication off",
            "description": (
                "Removes the authenticator and the recovery codes after a current code or a recovery code, "
                "unless policy requires two-factor authentication. Password sessions only (other credentials: 403)."
            ),
            "tags": ["totp"],
            "security": ANY_CREDENTIAL,
            "requestBody": json_body(schema_ref("TotpProof")),
            "responses": with_common(
                {
                    "200": json_answer("Turned off.", schema_ref("TotpDisabled")),
                    "400": bad_request("invalid_totp", "invalid_recovery_code",
                                       what="No code was sent, or it is wrong or used"),
                    "403": error_answer(
                        f"{TOTP_FORBIDDEN} `totp_required_by_policy`: it cannot be turned off for this user.",
                        [*TOTP_FORBIDDEN_CODES, "totp_required_by_policy"],
                    ),
                    "409": error_answer("Two-factor authentication is not on.", ["totp_not_enrolled"]),
                    "429": error_answer(
                        "Too many code attempts; wait Retry-After seconds.", ["too_many_requests"], RETRY
                    ),
                },
                body=True,
            ),
        },
    },
    "/api/me/totp/confirm": {
        "post": {
            "operationId": "totpConfirm",
            "summary": "Confirm the two-factor set-up",
            "description": (
                "Activates the pending secret with one correct code and answers fresh recovery codes. Password "
                "sessions only (other credentials: 403)."
            ),
            "tags": ["totp"],
            "security": ANY_CREDENTIAL,
            "requestBody": json_body(schema_ref("TotpConfirmRequest")),
            "responses": with_common(
                {
                    "200": json_answer("Two-factor authentication is on.", schema_ref("TotpConfirmed")),
                    "400": bad_request("invalid_totp", what="The code is missing, wrong or used"),
                    "403": error_answer(TOTP_FORBIDDEN, TOTP_FORBIDDEN_CODES),
                    "409": error_answer(
                        "No set-up waits for confirmation (or it is over an hour old).", ["no_pending_enrolment"]
                    ),
                    "429": error_answer(
                        "Too many code attempts; wait Retry-After seconds.", ["too_many_requests"], RETRY
                    ),
                },
                body=True,
            ),
        },
    },
    "/api/me/totp/recovery-codes": {
        "post": {
            "operationId": "totpRegenerateRecoveryCodes",
            "summary": "New recovery codes",
            "description": (
                "A fresh set of recovery codes after a current code or a recovery code; the old set stops "
                "working. Password sessions only (other credentials: 403)."
            ),
            "tags": ["totp"],
            "security": ANY_CREDENTIAL,
            "requestBody": json_body(schema_ref("TotpProof")),
            "responses": with_common(
                {
                    "200": json_answer("The new codes, shown once.", schema_ref("TotpRecoveryCodes")),
                    "400": bad_request("invalid_totp", "invalid_recovery_code",
                                       what="No code was sent, or it is wrong or used"),
                    "403": error_answer(TOTP_FORBIDDEN, TOTP_FORBIDDEN_CODES),
                    "409": error_answer("Two-factor authentication is not on.", ["totp_not_enrolled"]),
                    "429": error_answer(
                        "Too many code attempts; wait Retry-After seconds.", ["too_many_requests"], RETRY
                    ),
                },
                body=True,
            ),
        },
    },
    "/api/admin/users/{username}/totp/reset": {
        "post": {
            "operationId": "adminResetTotp",
            "summary": "Reset a user's two-factor authentication",
            "description": (
                "Removes the user's authenticator, pending set-up and recovery codes (for a user who lost their "
                "device). Administrators only, with the `admin` scope when the credential is scoped."
            ),
            "tags": ["admin", "totp"],
            "security": ANY_CREDENTIAL,
            "parameters": [USERNAME_PARAMETER],
            "requestBody": IGNORED_BODY,
            "responses": with_common(
                {
                    "200": json_answer("Reset.", schema_ref("TotpReset")),
                    "403": error_answer(
                        f"`forbidden`: this needs an administrator. {COOKIE_WRITE_403}", ["forbidden", "cross_origin"]
                    ),
                    "404": error_answer("There is no such user.", ["user_not_found", "not_found"]),
                },
                body=True,
            ),
        },
    },
    "/api/admin/users/{username}/passkeys/reset": {
        "post": {
            "operationId": "adminResetPasskeys",
            "summary": "Remove every passkey of a user",
            "description": (
                "For a user who lost their device: every passkey of theirs is removed (audited); they add new ones "
                "from their account page. Administrators only, with the `admin` scope when the credential is scoped."
            ),
            "tags": ["admin"],
            "security": ANY_CREDENTIAL,
            "parameters": [USERNAME_PARAMETER],
            "requestBody": IGNORED_BODY,
            "responses": with_common(
                {
                    "200": json_answer("Removed.", {
                        "type": "object",
                        "required": ["username", "reset", "removed"],
                        "properties": {
                            "username": {"type": "string"},
                            "reset": {"const": True},
                            "removed": {"type": "integer", "minimum": 0, "description": "How many passkeys."},
                        },
                    }),
                    "403": error_answer(
                        f"`forbidden`: this needs an administrator. {COOKIE_WRITE_403}", ["forbidden", "cross_origin"]
                    ),
                    "404": error_answer("There is no such user.", ["user_not_found", "not_found"]),
                },
                body=True,
            ),
        },
    },
    "/api/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "List API keys",
            "description": (
                "The caller's own keys, newest first; administrators may name another `user` or ask for `all`. "
                "A password session, or a credential with the `admin` scope."
            ),
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "At most this many keys (default 1000). One value: a repeated `limit` is read "
                    "as its first.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    # The server reads one value: a list or object is sent comma-separated, which it refuses.
                    "style": "form",
                    "explode": False,
                },
                {
                    "name": "user",
                    "in": "query",
                    "required": False,
                    "description": "Another user's keys (administrators).",
                    "schema": {"type": "string"},
                },
                {
                    "name": "all",
                    "in": "query",
                    "required": False,
                    "description": "`1` or `true`: every user's keys (administrators); any other value: no.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": with_common(
                {
                    "200": json_answer("The keys.", schema_ref("ApiKeyList")),
                    "400": error_answer("`limit` is not a whole number from 1 to 1000.", ["invalid_request"]),
                    "403": KEY_FORBIDDEN,
                    "404": error_answer("There is no such user.", ["not_found"]),
                },
            ),
        },
        "post": {
            "operationId": "mintKey",
            "summary": "Mint an API key",
            "description": (
                "A new key for the caller (or, for administrators, another `user`); the secret is in this answer "
                "only. A password session, or a credential with the `admin` scope, never granting scopes it lacks."
            ),
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "requestBody": json_body(schema_ref("MintKeyRequest")),
            "responses": with_common(
                {
                    "201": json_answer("The new key with its secret.", schema_ref("MintedApiKey")),
                    "400": bad_request(
                        what="A member is missing, unknown, of the wrong type or out of range; an unknown or "
                        "forbidden scope, an address range that is not one, a disabled owner",
                    ),
                    "403": KEY_FORBIDDEN,
                    "404": error_answer("There is no such user.", ["not_found"]),
                },
                body=True,
            ),
        },
    },
    "/api/keys/{key_id}": {
        "get": {
            "operationId": "showKey",
            "summary": "Show an API key",
            "description": "One key, without its secret. Its owner or an administrator, as for listing keys.",
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "parameters": [KEY_ID_PARAMETER],
            "responses": with_common(
                {
                    "200": json_answer("The key.", schema_ref("ApiKey")),
                    "403": KEY_FORBIDDEN,
                    "404": KEY_NOT_FOUND,
                },
            ),
        },
        "delete": {
            "operationId": "revokeKey",
            "summary": "Revoke an API key",
            "description": (
                "Revokes the key at once, with its grace secret and the sessions opened with it; revoking a "
                "revoked key changes nothing. Its owner or an administrator, as for listing keys."
            ),
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "parameters": [KEY_ID_PARAMETER],
            "responses": with_common(
                {
                    "200": json_answer("The key, `status: revoked`.", schema_ref("ApiKey")),
                    "403": KEY_FORBIDDEN,
                    "404": KEY_NOT_FOUND,
                    "415": response_ref("NotJson"),
                },
            ),
        },
    },
    "/api/keys/{key_id}/audit": {
        "get": {
            "operationId": "keyAudit",
            "summary": "An API key's audit trail",
            "description": "The latest 200 audit events about the key. Its owner or an administrator.",
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "parameters": [KEY_ID_PARAMETER],
            "responses": with_common(
                {
                    "200": json_answer("The events.", schema_ref("KeyAudit")),
                    "403": KEY_FORBIDDEN,
                    "404": KEY_NOT_FOUND,
                },
            ),
        },
    },
    "/api/keys/{key_id}/rotate": {
        "post": {
            "operationId": "rotateKey",
            "summary": "Rotate an API key's secret",
            "description": (
                "The same key id with a new secret, in this answer only; the previous secret keeps working for "
                "`grace_seconds`. Its owner or an administrator."
            ),
            "tags": ["keys"],
            "security": ANY_CREDENTIAL,
            "parameters": [KEY_ID_PARAMETER],
            "requestBody": json_body(schema_ref("RotateKeyRequest")),
            "responses": with_common(
                {
                    "200": json_answer("The key with its new secret.", schema_ref("MintedApiKey")),
                    "400": bad_request(what="`grace_seconds` is not a whole number from 0 to 2592000, or the key "
                                       "is revoked or expired"),
                    "403": KEY_FORBIDDEN,
                    "404": KEY_NOT_FOUND,
                    "409": error_answer("Another rotation or a revocation happened at the same moment.", ["conflict"]),
                },
                body=True,
            ),
        },
    },
    "/api/oauth/authorize": {
        "post": {
            "operationId": "brokerAuthorize",
            "summary": "Start a brokered sign-in",
            "description": (
                "For thin clients (old apps, scripts) registered with --broker: the server holds state, nonce and "
                "PKCE verifier and answers the authorization URL to open. No credentials; throttled per address."
            ),
            "tags": ["broker"],
            "security": NO_CREDENTIAL,
            "requestBody": json_body(schema_ref("BrokerAuthorizeRequest")),
            "responses": with_common(
                {
                    "200": json_answer("The transaction.", schema_ref("BrokerStarted")),
                    "400": bad_request(
                        "invalid_client", "unauthorized_client", "invalid_redirect_uri", "invalid_scope",
                        what="A member is missing or malformed, or the client, redirect URI or scope is not allowed",
                    ),
                    "429": error_answer(
                        "More than 120 sign-ins started from this address in a minute.", ["too_many_requests"], RETRY
                    ),
                },
                body=True,
                credential=False,
            ),
        },
    },
    "/api/oauth/callback": {
        "post": {
            "operationId": "brokerCallback",
            "summary": "Complete a brokered sign-in",
            "description": (
                "The thin client hands back what its redirect URI received; the server checks it against the "
                "transaction, redeems the code and answers the tokens and the user. No credentials: the "
                "transaction handle is the proof."
            ),
            "tags": ["broker"],
            "security": NO_CREDENTIAL,
            "parameters": [
                {
                    "name": "X-App-Version",
                    "in": "header",
                    "required": False,
                    "description": "The app's version, for the audit log (default: its User-Agent).",
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": json_body(schema_ref("BrokerCallbackRequest")),
            "responses": with_common(
                {
                    "200": json_answer("Signed in.", schema_ref("BrokerTokens")),
                    "400": json_answer(
                        "Every refusal (docs/broker-errors.md): `transaction_missing`, `transaction_unknown`, "
                        "`state_missing`, `state_unknown`, `state_mismatch`, `state_expired`, `state_used`, "
                        "`code_missing`, `code_verifier_missing`, `code_rejected`, `nonce_mismatch`, "
                        "`id_token_invalid`, `issuer_mismatch`, `invalid_client`, `invalid_request`, `invalid_json`, "
                        "or the login page's own error code passed through (`access_denied`, …, `provider_error`).",
                        schema_ref("Error"),
                    ),
                    "429": error_answer(
                        "Too many unknown transaction handles from this address (30 a minute).",
                        ["too_many_requests"],
                        RETRY,
                    ),
                },
                body=True,
                credential=False,
            ),
        },
    },
    "/api/authz/forward-auth": forward_auth_path("/api/authz/forward-auth"),
    "/api/authz/auth-request": forward_auth_path("/api/authz/auth-request"),
    "/api/openapi.json": {
        "get": {
            "operationId": "openapiDocument",
            "summary": "This document",
            "description": "The OpenAPI 3.1 description of every /api/ route, for this server's issuer. Anyone.",
            "tags": ["meta"],
            "security": NO_CREDENTIAL,
            "responses": {
                "200": json_answer("The document.", schema_ref("OpenApiDocument")),
                "default": response_ref("Other"),
            },
        },
    },
}

TAGS = [
    {"name": "session", "description": "JSON login and logout: the SSO session cookie."},
    {"name": "account", "description": "The caller's own identity."},
    {"name": "consents", "description": "The OAuth clients the user consented to."},
    {"name": "totp", "description": "Two-factor authentication (TOTP) and recovery codes."},
    {"name": "keys", "description": "API keys (docs/keys.md)."},
    {"name": "admin", "description": "Administrators' operations."},
    {"name": "broker", "description": "Sign-in brokered for thin clients (docs/broker-errors.md)."},
    {"name": "forward-auth", "description": "Checks for reverse proxies (docs/forward-auth.md)."},
    {"name": "meta", "description": "This description."},
]

INFO = {
    "title": "authserver JSON API",
    "version": "1",
    "description": (
        "The JSON routes under /api/ of authserver, an OAuth 2.0 / OpenID Connect provider with an API-key vault "
        "and TOTP (the OAuth and OIDC endpoints themselves are described by /.well-known/openid-configuration).\n\n"
        "Errors are `{\"error\": code, \"error_description\": sentence}` with `Content-Type: application/json`; "
        "429 and 503 carry `Retry-After`, a refused credential `WWW-Authenticate: Bearer realm=\"authserver\"`. "
        "Bodies are JSON objects in UTF-8 of at most 1 MiB (413 beyond). Every answer carries `X-Request-ID` "
        "(the caller's own when it sends a well-formed one) and the security headers (Content-Security-Policy, "
        "X-Content-Type-Options, Referrer-Policy, X-Frame-Options, Cross-Origin-Opener-Policy; "
        "Strict-Transport-Security on https); answers under /api/ are `Cache-Control: no-store` unless they say "
        "otherwise.\n\n"
        "A write (POST, PUT, PATCH, DELETE) authenticated by the session cookie must be sent as "
        "`Content-Type: application/json` (415 otherwise; a DELETE without a body excepted) and, when it carries "
        "an `Origin`, from this server's own origin (403 `cross_origin` otherwise)."
    ),
}


def document(base_url: str) -> dict:
    """The OpenAPI 3.1 document, with `servers: [{"url": base_url}]`."""
    return copy.deepcopy(
        {
            "openapi": OPENAPI_VERSION,
            "info": INFO,
            "servers": [{"url": base_url}],
            "tags": TAGS,
            "paths": PATHS,
            "components": {
                "schemas": SCHEMAS,
                "responses": RESPONSES,
                "headers": HEADERS,
                "securitySchemes": SECURITY_SCHEMES,
            },
        }
    )
