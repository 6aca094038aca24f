"""OIDC helpers: PKCE pairs, a logged-in test client, the authorize/consent round trip, the token
exchange, ID-token checks, and the same round trip against a live server (the `live` fixture)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import login
from tests.helpers.html import form_action

REDIRECT = "https://gallery.example/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# Every authorization request uses PKCE unless a test says otherwise (AUTHSERVER_PKCE_REQUIRED=all).
DEFAULT_VERIFIER, DEFAULT_CHALLENGE = pkce_pair()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def authorize_params(client, *, redirect_uri: str = REDIRECT, scope: str = "openid profile email",
                     state: str | None = "s-123", nonce: str | None = "", challenge: str | None = DEFAULT_CHALLENGE,
                     **extra):
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri, "scope": scope}
    if state is not None:
        params["state"] = state
    if nonce is not None:
        # A fresh nonce each time unless one is given: the server refuses a replayed nonce.
        params["nonce"] = nonce or secrets.token_urlsafe(12)
    if challenge is not None:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    params.update(extra)
    return params


def get_code(http, client, *, allow: bool = True, **kwargs) -> tuple[str | None, dict, dict]:
    """Authorize as the logged-in user of `http`, consenting if asked; (code, redirect query, params)."""
    params = authorize_params(client, **kwargs)
    response = http.get("/oauth/authorize", query_string=params)
    if response.status_code == 200:  # the consent page
        response = http.post(form_action(response.text), data={
            "csrf_token": csrf_token(response.text), ("allow" if allow else "deny"): "x"})
        assert response.status_code == 303, response.text  # after a POST (RFC 9700 §4.11)
    else:
        assert response.status_code == 302, response.text
    query = query_of(response.headers["Location"])
    return query.get("code"), query, params


def exchange(http, client, secret, code, *, verifier=DEFAULT_VERIFIER, redirect_uri=REDIRECT, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra}
    if verifier:
        data["code_verifier"] = verifier
    if secret:
        return http.post("/oauth/token", data=data, auth=(client.client_id, secret))
    data["client_id"] = client.client_id
    return http.post("/oauth/token", data=data)


def logged_in(http, username: str):
    assert login(http, username).status_code == 200
    return http


def decode_id_token(services, token: str) -> dict:
    keys = KeySet.import_key_set(services.signing.jwks())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"]).claims)


@dataclass
class Live:
    app: object
    url: str
    services: object


def live_browser(live, username: str, password: str = "correct horse battery staple"):
    """A requests session logged in on the live server (JSON login sets the SSO cookie)."""
    import requests

    http = requests.Session()
    response = http.post(live.url + "/api/session/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return http


def live_code(http, live, client, **kwargs) -> tuple[str, dict]:
    """Authorize on the live server as the session's user, consenting if asked."""
    params = authorize_params(client, **kwargs)
    response = http.get(live.url + "/oauth/authorize", params=params, allow_redirects=False)
    if response.status_code == 200:
        response = http.post(live.url + form_action(response.text),
                             data={"csrf_token": csrf_token(response.text), "allow": "x"}, allow_redirects=False)
        assert response.status_code == 303, response.text
    else:
        assert response.status_code == 302, response.text
    query = query_of(response.headers["Location"])
    return query["code"], params
