"""End to end over real HTTP with Authlib's own OAuth client against a live server:
discovery, authorize with PKCE/state/nonce, the /login form, consent, code exchange,
ID token checks against JWKS, userinfo, refresh rotation, introspection, revocation,
RP-initiated logout and a back-channel logout token received by a test receiver."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urljoin

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from authserver.oidc.clients import BACKCHANNEL_EVENT
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.helpers.html import form_action
from tests.helpers.oidc import REDIRECT, query_of
from tests.helpers.receiver import LogoutReceiver

ALGS = ["RS256", "ES256", "EdDSA"]
VERIFIER = generate_token(48)


def discover(live) -> dict:
    return requests.get(live.url + "/.well-known/openid-configuration", timeout=10).json()


def browser_login_and_consent(live, authorization_url: str) -> tuple[requests.Session, str]:
    """A browser: follows the authorize URL to /login, submits the form, consents; returns the callback URL."""
    browser = requests.Session()
    response = browser.get(authorization_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    page = browser.get(urljoin(live.url, response.headers["Location"]), timeout=10)
    next_value = re.search(r'name="next" type="hidden" value="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    response = browser.post(live.url + "/login", allow_redirects=False, timeout=10, data={
        "username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page.text), "next": next_value})
    assert response.status_code == 303  # after a POST (RFC 9700 §4.11)
    response = browser.get(urljoin(live.url, response.headers["Location"]), allow_redirects=False, timeout=10)
    if response.status_code == 200:
        assert "Allow" in response.text
        response = browser.post(live.url + form_action(response.text), allow_redirects=False, timeout=10,
                                data={"csrf_token": csrf_token(response.text), "allow": "allow"})
        assert response.status_code == 303
    else:
        assert response.status_code == 302
    return browser, response.headers["Location"]


def verify_id_token(live, meta, id_token, client_id, *, nonce, access_token) -> dict:
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    token = jwt.decode(id_token, keys, algorithms=ALGS)
    claims = CodeIDToken(token.claims, token.header,
                         options={"iss": {"essential": True, "value": meta["issuer"]},
                                  "aud": {"essential": True, "value": client_id}},
                         params={"nonce": nonce, "client_id": client_id, "access_token": access_token})
    claims.validate()
    assert claims["at_hash"]
    return dict(claims)


@pytest.fixture
def alice(live):
    return make_user(live.services, "alice", groups=["family"])


def test_confidential_client_full_flow(live, alice):
    meta = discover(live)
    assert meta["issuer"] == live.url
    with LogoutReceiver() as receiver:
        gallery, secret = make_client(live.services, "Gallery", backchannel_logout_uri=receiver.url, introspect=True,
                                      post_logout_redirect_uris=["https://gallery.example/bye"])
        oauth = OAuth2Session(gallery.client_id, secret, scope="openid profile email groups", redirect_uri=REDIRECT,
                              code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic")
        verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
        url, state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        browser, callback = browser_login_and_consent(live, url)
        assert query_of(callback)["iss"] == meta["issuer"] and query_of(callback)["state"] == state

        token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        claims = verify_id_token(live, meta, token["id_token"], gallery.client_id, nonce=nonce,
                                 access_token=token["access_token"])
        assert claims["sub"] == alice.sub and claims["amr"] == ["pwd"] and claims["sid"]

        info = oauth.get(meta["userinfo_endpoint"], timeout=10).json()
        assert info["sub"] == alice.sub and info["groups"] == ["family"] and info["email"] == "alice@photos.example"
        assert oauth.post(meta["userinfo_endpoint"], timeout=10).json() == info

        old_refresh = token["refresh_token"]
        renewed = oauth.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
        assert renewed["refresh_token"] != old_refresh
        renewed_claims = verify_id_token(live, meta, renewed["id_token"], gallery.client_id, nonce=None,
                                         access_token=renewed["access_token"])
        assert "nonce" not in renewed_claims and renewed_claims["sid"] == claims["sid"]

        introspected = oauth.introspect_token(meta["introspection_endpoint"], token=renewed["access_token"]).json()
        assert introspected["active"] is True and introspected["sub"] == alice.sub

        reuse = requests.post(meta["token_endpoint"], auth=(gallery.client_id, secret), timeout=10,
                              data={"grant_type": "refresh_token", "refresh_token": old_refresh})
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        after_reuse = oauth.introspect_token(meta["introspection_endpoint"], token=renewed["access_token"])
        assert after_reuse.json() == {"active": False}

        # A second login for the same session, then revocation of its refresh token.
        verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
        url, state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        callback = browser.get(url, allow_redirects=False, timeout=10).headers["Location"]
        token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        assert oauth.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"],
                                  token_type_hint="refresh_token").status_code == 200
        ended = oauth.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
        assert ended.json() == {"active": False}

        logout = browser.get(meta["end_session_endpoint"], allow_redirects=False, timeout=10, params={
            "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://gallery.example/bye",
            "state": "bye-state"})
        assert logout.status_code == 302
        assert logout.headers["Location"] == "https://gallery.example/bye?state=bye-state"
        assert browser.get(live.url + "/api/me", timeout=10).status_code == 401

        assert receiver.received.wait(10), "the back-channel logout token arrived"
        logout_token = jwt.decode(receiver.tokens[0], KeySet.import_key_set(requests.get(meta["jwks_uri"]).json()),
                                  algorithms=ALGS)
        assert logout_token.header["typ"] == "logout+jwt"
        lt = logout_token.claims
        assert lt["iss"] == meta["issuer"] and lt["aud"] == gallery.client_id and lt["sub"] == alice.sub
        assert lt["sid"] == claims["sid"] and BACKCHANNEL_EVENT in lt["events"] and lt["jti"] and lt["iat"]
        assert "nonce" not in lt


def test_public_client_with_custom_scheme_redirect(live, alice):
    meta = discover(live)
    app_client, _ = make_client(live.services, "Immich app", redirect_uris=["app.immich:///oauth-callback"],
                                public=True, scope="openid email profile")
    oauth = OAuth2Session(app_client.client_id, scope="openid email profile", redirect_uri="app.immich:///oauth-callback",
                          code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
    url, state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    _, callback = browser_login_and_consent(live, url)
    assert callback.startswith("app.immich:///oauth-callback?") and query_of(callback)["state"] == state
    token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    claims = verify_id_token(live, meta, token["id_token"], app_client.client_id, nonce=nonce,
                             access_token=token["access_token"])
    assert claims["email"] == "alice@photos.example"
    renewed = oauth.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert renewed["access_token"] != token["access_token"]


def test_client_without_nonce_over_http(live, alice):
    meta = discover(live)
    gallery, secret = make_client(live.services, "No nonce", token_endpoint_auth_method="client_secret_post",
                                  scope="openid email profile")
    oauth = OAuth2Session(gallery.client_id, secret, scope="openid email profile", redirect_uri=REDIRECT,
                          code_challenge_method="S256", token_endpoint_auth_method="client_secret_post")
    verifier = generate_token(48)
    url, _ = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    _, callback = browser_login_and_consent(live, url)
    token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"]).json())
    assert "nonce" not in jwt.decode(token["id_token"], keys).claims
    renewed = oauth.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert "nonce" not in jwt.decode(renewed["id_token"], keys).claims


def test_native_app_on_a_random_loopback_port(live, alice):
    """RFC 8252: a desktop uploader listens on a port of its choosing under the registered loopback URI."""
    import socket

    meta = discover(live)
    app_client, _ = make_client(live.services, "Uploader", redirect_uris=["http://127.0.0.1/oauth/callback"],
                                public=True, scope="openid profile")
    with socket.socket() as listener:  # the port the app would listen on
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
    oauth = OAuth2Session(app_client.client_id, scope="openid profile", redirect_uri=redirect_uri,
                          code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier, nonce = generate_token(48), secrets.token_urlsafe(16)
    url, state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    _, callback = browser_login_and_consent(live, url)
    assert callback.startswith(redirect_uri + "?") and query_of(callback)["state"] == state
    token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    claims = verify_id_token(live, meta, token["id_token"], app_client.client_id, nonce=nonce,
                             access_token=token["access_token"])
    assert claims["sub"] == alice.sub


def test_client_credentials_over_http(live):
    meta = discover(live)
    service, secret = make_client(live.services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read", introspect=True)
    oauth = OAuth2Session(service.client_id, secret, scope="photos:read")
    token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert token["scope"] == "photos:read" and "refresh_token" not in token
    introspected = oauth.introspect_token(meta["introspection_endpoint"], token=token["access_token"]).json()
    assert introspected["active"] is True and introspected["client_id"] == service.client_id


def test_browser_logout_also_sends_back_channel_logout(live, alice):
    with LogoutReceiver() as receiver:
        gallery, secret = make_client(live.services, trusted=True, backchannel_logout_uri=receiver.url)
        meta = discover(live)
        oauth = OAuth2Session(gallery.client_id, secret, scope="openid", redirect_uri=REDIRECT,
                          code_challenge_method="S256")
        url, _ = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=VERIFIER)
        browser, callback = browser_login_and_consent(live, url)
        oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=VERIFIER)
        account = browser.get(live.url + "/account", timeout=10)
        response = browser.post(live.url + "/logout", data={"csrf_token": csrf_token(account.text)},
                                allow_redirects=False, timeout=10)
        assert response.status_code == 303
        assert receiver.received.wait(10)
        assert len(receiver.tokens) == 1


def test_logout_without_id_token_hint_asks_for_confirmation(live, alice):
    gallery, _ = make_client(live.services, trusted=True, post_logout_redirect_uris=["https://gallery.example/bye"])
    browser = requests.Session()
    browser.post(live.url + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    page = browser.get(live.url + "/oauth/logout", timeout=10, params={
        "client_id": gallery.client_id, "post_logout_redirect_uri": "https://gallery.example/bye"})
    assert page.status_code == 200 and "Sign out?" in page.text
    assert browser.get(live.url + "/api/me").status_code == 200
    forged = browser.post(live.url + "/oauth/logout", data={"client_id": gallery.client_id}, allow_redirects=False)
    assert forged.status_code == 200 and browser.get(live.url + "/api/me").status_code == 200
    done = browser.post(live.url + "/oauth/logout", allow_redirects=False, timeout=10, data={
        "csrf_token": csrf_token(page.text), "client_id": gallery.client_id,
        "post_logout_redirect_uri": "https://gallery.example/bye"})
    # Without an id_token_hint the OP does not redirect (RP-Initiated Logout 1.0 section 3).
    assert done.status_code == 200 and "signed out" in done.text
    assert browser.get(live.url + "/api/me").status_code == 401


def test_logout_to_an_unregistered_uri_does_not_redirect(live, alice):
    meta = discover(live)
    gallery, secret = make_client(live.services, trusted=True, post_logout_redirect_uris=["https://gallery.example/bye"])
    oauth = OAuth2Session(gallery.client_id, secret, scope="openid", redirect_uri=REDIRECT,
                          code_challenge_method="S256")
    url, _ = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=VERIFIER)
    browser, callback = browser_login_and_consent(live, url)
    token = oauth.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=VERIFIER)
    response = browser.get(meta["end_session_endpoint"], allow_redirects=False, timeout=10, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 200 and "Location" not in response.headers
