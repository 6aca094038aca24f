"""The token endpoint: code redemption, PKCE, client authentication, refresh rotation,
client credentials, private_key_jwt, ID tokens and RFC 9068 access tokens."""

import base64
import re
import threading
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from sqlalchemy import func, select

from authserver import create_app
from authserver.audit.models import AuditEvent
from authserver.extensions import db
from authserver.oidc.clients import ClientError
from authserver.oidc.models import OAuthClient, OAuthToken
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.oidc import (
    DEFAULT_VERIFIER,
    REDIRECT,
    decode_id_token,
    exchange,
    get_code,
    live_browser,
    live_code,
    logged_in,
    pkce_pair,
)


@pytest.fixture
def alice(services):
    return make_user(services, "alice", groups=["family"])


def introspect(client, resource, secret, token, **extra):
    return client.post("/oauth/introspect", data={"token": token, **extra}, auth=(resource.client_id, secret))


def refresh(client, gallery, secret, refresh_token):
    return client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                       auth=(gallery.client_id, secret))


def test_code_exchange_gives_tokens_and_a_complete_id_token(client, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    verifier, challenge = pkce_pair()
    code, _, params = get_code(client, gallery, challenge=challenge, scope="openid profile email groups")
    response = exchange(client, gallery, secret, code, verifier=verifier)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"
    claims = decode_id_token(services, body["id_token"])
    assert claims["iss"] == services.settings.issuer
    assert claims["sub"] == alice.sub and claims["aud"] == gallery.client_id and claims["azp"] == gallery.client_id
    assert claims["nonce"] == params["nonce"]
    assert claims["amr"] == ["pwd"] and claims["acr"] == "1" and claims["sid"]
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]
    assert claims["email"] == "alice@photos.example" and claims["groups"] == ["family"]
    assert claims["preferred_username"] == "alice"
    from authlib.oidc.core.util import create_half_hash

    assert claims["at_hash"] == create_half_hash(body["access_token"], "RS256").decode()
    header = jwt.decode(body["id_token"], KeySet.import_key_set(services.signing.jwks())).header
    assert header["kid"] in {k["kid"] for k in services.signing.jwks()["keys"]}


def test_client_secret_post_with_immich_default_scope_just_works(client, services, alice):
    immich, secret = make_client(services, "Immich", scope="openid email profile",
                                 token_endpoint_auth_method="client_secret_post")
    logged_in(client, "alice")
    verifier, challenge = pkce_pair()
    code, _, _ = get_code(client, immich, scope="openid email profile", challenge=challenge)
    response = client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
        "client_id": immich.client_id, "client_secret": secret})
    assert response.status_code == 200 and response.json["id_token"]


def test_tokens_are_stored_hashed(client, services, alice, db):
    from authserver.oidc.models import OAuthToken

    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    body = exchange(client, gallery, secret, code).json
    row = db.session.scalar(db.select(OAuthToken))
    assert body["access_token"] not in (row.access_token_hash, row.refresh_token_hash)
    import hashlib

    assert row.access_token_hash == hashlib.sha256(body["access_token"].encode()).hexdigest()


def test_second_redemption_fails_and_revokes_what_the_first_issued(client, services, alice):
    gallery, secret = make_client(services, introspect=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    first = exchange(client, gallery, secret, code).json
    second = exchange(client, gallery, secret, code)
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    assert introspect(client, gallery, secret, first["access_token"]).json == {"active": False}
    assert refresh(client, gallery, secret, first["refresh_token"]).json["error"] == "invalid_grant"


def test_code_expires_after_60_seconds(client, services, clock, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    clock.advance(seconds=61)
    assert exchange(client, gallery, secret, code).json["error"] == "invalid_grant"


def test_code_is_bound_to_its_client_and_redirect_uri(client, services, alice):
    gallery, secret = make_client(services)
    other, other_secret = make_client(services, "Other")
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    assert exchange(client, other, other_secret, code).json["error"] == "invalid_grant"
    code, _, _ = get_code(client, gallery)
    assert exchange(client, gallery, secret, code, redirect_uri=REDIRECT + "x").json["error"] == "invalid_grant"


def test_missing_or_wrong_verifier_is_refused(client, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    verifier, challenge = pkce_pair()
    code, _, _ = get_code(client, gallery, challenge=challenge)
    missing = exchange(client, gallery, secret, code, verifier=None)
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"
    # The failed attempt did not burn the code: the client with the right verifier still gets its tokens.
    wrong = exchange(client, gallery, secret, code, verifier=pkce_pair()[0])
    assert wrong.json["error"] == "invalid_grant"
    assert exchange(client, gallery, secret, code, verifier=verifier).status_code == 200


def test_verifier_for_a_code_issued_without_challenge_is_refused(client, services, alice):
    gallery, secret = make_client(services, pkce_required=False)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, challenge=None)
    response = exchange(client, gallery, secret, code, verifier=pkce_pair()[0])
    assert response.status_code == 400 and "code_challenge" in response.json["error_description"]


def test_public_client_exchanges_with_verifier_only(client, services, alice):
    app_client, _ = make_client(services, "App", redirect_uris=["app.immich:///oauth-callback"], public=True)
    logged_in(client, "alice")
    verifier, challenge = pkce_pair()
    code, _, _ = get_code(client, app_client, redirect_uri="app.immich:///oauth-callback", challenge=challenge)
    no_verifier = exchange(client, app_client, None, code, verifier=None, redirect_uri="app.immich:///oauth-callback")
    assert no_verifier.json["error"] == "invalid_request"
    ok = exchange(client, app_client, None, code, verifier=verifier, redirect_uri="app.immich:///oauth-callback")
    assert ok.status_code == 200 and ok.json["refresh_token"]


@pytest.mark.parametrize("auth", ["wrong secret", "unknown client", "no auth"])
def test_wrong_client_authentication_is_invalid_client(client, services, alice, auth):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if auth == "wrong secret":
        wrong = secret[:-1] + ("x" if secret[-1] != "x" else "y")
        response = client.post("/oauth/token", data=data, auth=(gallery.client_id, wrong))
    elif auth == "unknown client":
        response = client.post("/oauth/token", data=data, auth=("nobody", secret))
    else:
        response = client.post("/oauth/token", data={**data, "client_id": gallery.client_id})
    assert response.status_code in (400, 401) and response.json["error"] == "invalid_client"
    assert exchange(client, gallery, secret, code).status_code == 200


def test_failed_client_authentication_is_throttled(client, services, db):
    gallery, secret = make_client(services, grants=["client_credentials"], scope="photos:read")
    for _ in range(60):
        client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(gallery.client_id, "bad"))
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(gallery.client_id, "bad"))
    assert response.status_code == 429 and response.headers["Retry-After"]
    # Audited: each failure, then the throttle's refusal.
    from authserver.audit.models import AuditEvent

    actions = db.session.scalars(
        db.select(AuditEvent.action).where(AuditEvent.actor == f"client:{gallery.client_id}")).all()
    assert actions.count("client.auth_failed") == 60 and actions.count("client.throttled") == 1
    # The client with its right secret is never refused for the failures of others at its address.
    ok = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(gallery.client_id, secret))
    assert ok.status_code == 200


@pytest.mark.parametrize("body", [
    {"grant_type": "password", "username": "alice", "password": "x"},
    {"grant_type": "implicit"},
    {},
])
def test_unsupported_grants_are_refused(client, services, body):
    gallery, secret = make_client(services)
    response = client.post("/oauth/token", data=body, auth=(gallery.client_id, secret))
    assert response.status_code == 400 and response.json["error"] == "unsupported_grant_type"


def test_refresh_rotates_and_reuse_revokes_the_family(client, services, alice):
    gallery, secret = make_client(services, introspect=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    first = exchange(client, gallery, secret, code).json
    second = refresh(client, gallery, secret, first["refresh_token"]).json
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    third = refresh(client, gallery, secret, second["refresh_token"]).json
    assert third["access_token"]
    reused = refresh(client, gallery, secret, first["refresh_token"])
    assert reused.status_code == 400 and reused.json["error"] == "invalid_grant"
    for token in (first["access_token"], second["access_token"], third["access_token"], third["refresh_token"]):
        assert introspect(client, gallery, secret, token).json == {"active": False}
    assert refresh(client, gallery, secret, third["refresh_token"]).json["error"] == "invalid_grant"


def test_refresh_id_token_keeps_session_claims_and_carries_no_nonce(client, services, clock, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    first = exchange(client, gallery, secret, code).json
    clock.advance(seconds=30)
    again = refresh(client, gallery, secret, first["refresh_token"]).json
    original, renewed = decode_id_token(services, first["id_token"]), decode_id_token(services, again["id_token"])
    assert "nonce" in original and "nonce" not in renewed
    for claim in ("iss", "sub", "aud", "auth_time", "sid", "amr"):
        assert renewed[claim] == original[claim]
    assert renewed["iat"] == original["iat"] + 30


def test_client_without_nonce_gets_id_tokens_without_nonce(client, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, nonce=None)
    first = exchange(client, gallery, secret, code).json
    assert "nonce" not in decode_id_token(services, first["id_token"])
    again = refresh(client, gallery, secret, first["refresh_token"]).json
    assert "nonce" not in decode_id_token(services, again["id_token"])


def test_refresh_with_narrower_scope_and_not_wider(client, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile")
    first = exchange(client, gallery, secret, code).json
    wider = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                              "scope": "openid profile email"}, auth=(gallery.client_id, secret))
    assert wider.json["error"] == "invalid_scope"
    narrower = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                 "scope": "openid"}, auth=(gallery.client_id, secret))
    assert narrower.status_code == 200 and narrower.json["scope"] == "openid"


def test_client_credentials(client, services):
    service, secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read photos:write", introspect=True)
    response = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "photos:read"},
                           auth=(service.client_id, secret))
    assert response.status_code == 200
    body = response.json
    assert body["scope"] == "photos:read" and "refresh_token" not in body and "id_token" not in body
    info = introspect(client, service, secret, body["access_token"]).json
    assert info["active"] is True and info["sub"] == service.client_id and info["client_id"] == service.client_id
    assert "username" not in info
    beyond = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "admin"},
                         auth=(service.client_id, secret))
    assert beyond.json["error"] == "invalid_scope"


def test_client_credentials_needs_the_grant(client, services):
    gallery, secret = make_client(services)
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(gallery.client_id, secret))
    assert response.json["error"] == "unauthorized_client"


def test_jwt_access_tokens_follow_rfc_9068(client, services, alice):
    gallery, secret = make_client(services, access_token_format="jwt", introspect=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    body = exchange(client, gallery, secret, code).json
    token = jwt.decode(body["access_token"], KeySet.import_key_set(services.signing.jwks()))
    assert token.header["typ"] == "at+jwt" and token.header["kid"]
    claims = token.claims
    assert claims["iss"] == services.settings.issuer and claims["sub"] == alice.sub
    assert claims["aud"] == gallery.client_id and claims["client_id"] == gallery.client_id
    assert claims["scope"] == "openid profile email" and claims["jti"] and claims["exp"] > claims["iat"]
    assert introspect(client, gallery, secret, body["access_token"]).json["active"] is True
    userinfo = client.get("/oauth/userinfo", headers={"Authorization": "Bearer " + body["access_token"]})
    assert userinfo.json["sub"] == alice.sub


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_id_tokens_signed_with_the_clients_algorithm(client, services, alice, alg):
    gallery, secret = make_client(services, id_token_signed_response_alg=alg)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    body = exchange(client, gallery, secret, code).json
    token = jwt.decode(body["id_token"], KeySet.import_key_set(services.signing.jwks()), algorithms=[alg])
    assert token.header["alg"] == alg
    from authlib.oidc.core.util import create_half_hash

    assert token.claims["at_hash"] == create_half_hash(body["access_token"], alg).decode()


def _assertion(key, client_id, audience, jti="jti-1"):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": now + 60, "iat": now, "jti": jti}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def test_private_key_jwt_and_jti_replay(live):
    key = RSAKey.generate_key(2048)
    key.ensure_kid()
    public = {"keys": [key.as_dict(private=False)]}
    service, secret = make_client(live.services, "Signer", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read", token_endpoint_auth_method="private_key_jwt", jwks=public)
    assert secret is None
    token_url = live.url + "/oauth/token"
    data = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    ok = requests.post(token_url, data={**data, "client_assertion": _assertion(key, service.client_id, token_url)})
    assert ok.status_code == 200, ok.text
    replay = requests.post(token_url, data={**data, "client_assertion": _assertion(key, service.client_id, token_url)})
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    stranger = RSAKey.generate_key(2048)
    stranger.ensure_kid()
    unknown_key = _assertion(stranger, service.client_id, token_url, "jti-2")
    forged = requests.post(token_url, data={**data, "client_assertion": unknown_key})
    assert forged.json()["error"] == "invalid_client"
    elsewhere = _assertion(key, service.client_id, "https://elsewhere", "jti-3")
    wrong_aud = requests.post(token_url, data={**data, "client_assertion": elsewhere})
    assert wrong_aud.json()["error"] == "invalid_client"


def test_private_key_jwt_takes_no_symmetric_key_and_no_hmac_assertion(client, services):
    # Found by the black-box review: a JWKS holding an `oct` key was registered, and an HS256
    # assertion signed with it was accepted (RFC 7523 asks for the client's *public* keys).
    shared = OctKey.generate_key(256)
    shared.ensure_kid()
    with pytest.raises(ClientError, match="public keys only: a private or symmetric key"):
        make_client(services, "Symmetric", redirect_uris=(), grants=["client_credentials"], scope="photos:read",
                    token_endpoint_auth_method="private_key_jwt", jwks={"keys": [shared.as_dict()]})
    # A registration made before the check: the HMAC assertion is still refused at the endpoint.
    rsa = RSAKey.generate_key(2048)
    rsa.ensure_kid()
    service, _ = make_client(services, "Signer", redirect_uris=(), grants=["client_credentials"],
                             scope="photos:read", token_endpoint_auth_method="private_key_jwt",
                             jwks={"keys": [rsa.as_dict(private=False)]})
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == service.client_id))
    row.jwks = {"keys": [rsa.as_dict(private=False), shared.as_dict()]}
    db.session.commit()
    audience = services.settings.issuer + "/oauth/token"
    now = int(time.time())
    claims = {"iss": service.client_id, "sub": service.client_id, "aud": audience, "exp": now + 60, "iat": now,
              "jti": "hmac-1"}
    forged = jwt.encode({"alg": "HS256", "kid": shared.kid}, claims, shared)
    answer = client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion": forged,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert answer.status_code in (400, 401) and answer.json["error"] == "invalid_client"


@pytest.mark.parametrize("jwks,message", [
    ({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]}, "private"),
    ({"keys": [1]}, "each key a JSON object"),
    ({"keys": ["x"]}, "each key a JSON object"),
    ({"keys": []}, "at least one"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}, "not a valid"),
    ({"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AAAA", "y": "AAAA"}]}, "RSA .* or EC P-256"),
    ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
     "RSA .* or EC P-256"),
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "A" * 5000}]}, "not a valid|2048"),
    ({"keys": [[[[[]]]]]}, "each key a JSON object"),
    ({"keys": [{"kty": "RSA", "n": {"nested": ["deep"]}, "e": "AQAB"}]}, "not a valid"),
], ids=["private", "number", "string", "empty", "off-curve", "other-curve", "okp", "huge-e", "nested", "object-n"])
def test_a_client_jwks_holds_public_signing_keys_only(services, jwks, message):
    with pytest.raises(ClientError, match=message):
        make_client(services, "Signer", redirect_uris=(), grants=["client_credentials"], scope="photos:read",
                    token_endpoint_auth_method="private_key_jwt", jwks=jwks)


def test_a_deeply_nested_jwks_in_the_console_is_a_form_error(client, services):
    make_user(services, "root", admin=True)
    logged_in(client, "root")
    page = client.get("/admin/clients")
    nested = '{"keys":[' + "[" * 5000 + "]" * 5000 + "]}"
    answer = client.post("/admin/clients", data={
        "csrf_token": csrf_token(page.text), "name": "Deep", "grant_types": "client_credentials",
        "token_endpoint_auth_method": "private_key_jwt", "scope": "photos:read", "jwks": nested,
        "id_token_signed_response_alg": "RS256", "access_token_format": "opaque"})
    assert answer.status_code == 400
    assert re.findall(r'class="field-error" id="jwks-error">([^<]+)', answer.text) == [
        "Paste a JSON object like {&#34;keys&#34;: [...]}."]


def test_parallel_redemption_has_one_winner_and_revokes_it(live, backend):
    make_user(live.services, "alice")
    gallery, secret = make_client(live.services, trusted=True, introspect=True)
    browser = live_browser(live, "alice")
    for _ in range(3):
        code, _ = live_code(browser, live, gallery)
        barrier = threading.Barrier(4)
        results = []

        def redeem(code=code, barrier=barrier, results=results):
            barrier.wait()
            response = requests.post(live.url + "/oauth/token", auth=(gallery.client_id, secret), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": DEFAULT_VERIFIER}, timeout=30)
            results.append(response)

        threads = [threading.Thread(target=redeem) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [r for r in results if r.status_code == 200]
        losers = [r for r in results if r.status_code == 400]
        assert len(winners) == 1 and len(losers) == 3, [(r.status_code, r.text) for r in results]
        assert all(r.json()["error"] == "invalid_grant" for r in losers)
        access = winners[0].json()["access_token"]
        check = requests.post(live.url + "/oauth/introspect", auth=(gallery.client_id, secret), data={"token": access})
        assert check.json() == {"active": False}


def test_parallel_refresh_has_one_winner(live):
    make_user(live.services, "alice")
    gallery, secret = make_client(live.services, trusted=True)
    browser = live_browser(live, "alice")
    code, _ = live_code(browser, live, gallery)
    first = requests.post(live.url + "/oauth/token", auth=(gallery.client_id, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": DEFAULT_VERIFIER}).json()
    barrier = threading.Barrier(3)
    results = []

    def use():
        barrier.wait()
        results.append(requests.post(live.url + "/oauth/token", auth=(gallery.client_id, secret), timeout=30, data={
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}))

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [200, 400, 400], [r.text for r in results]


@pytest.mark.parametrize("auth", [("nobody-at-all", "x"), ("REAL", "wrong secret")], ids=["unknown", "wrong"])
def test_client_authentication_failures_look_alike(client, services, auth):
    """The answer does not tell whether a client_id exists, and names what to send."""
    gallery, _ = make_client(services, grants=["client_credentials"], scope="photos:read")
    user = gallery.client_id if auth[0] == "REAL" else auth[0]
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(user, auth[1]))
    assert response.status_code == 401 and response.json == {
        "error": "invalid_client",
        "error_description": "Client authentication failed: send the client_id with its secret (HTTP Basic, or "
                             "client_id and client_secret in the form), or the signed assertion it was registered for.",
    }


def test_a_rotated_secret_or_a_deleted_client_is_refused_by_every_worker_at_once(client, services, settings, clock):
    # Two apps on one database stand for two workers (or two hosts): what the console changes
    # through one, the other sees on its next request; no worker keeps accepting the old secret.
    indexer, old_secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                      scope="photos:read")
    other = create_app(settings, clock=clock).test_client()

    def token_from_the_other_worker(secret):
        return other.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(indexer.client_id, secret))

    assert token_from_the_other_worker(old_secret).status_code == 200  # it has read the client now
    new_secret = services.oidc.clients.rotate_secret(indexer.client_id, actor="admin")
    refused = token_from_the_other_worker(old_secret)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert token_from_the_other_worker(new_secret).status_code == 200
    services.oidc.clients.delete(indexer.client_id, actor="admin")
    gone = token_from_the_other_worker(new_secret)
    assert gone.status_code == 401 and gone.json["error"] == "invalid_client"


def test_after_a_restore_nothing_issued_before_it_stays_usable(client, services, alice):
    # A restored backup brings back tokens and sessions revoked since it was taken; `authserver
    # after-restore` ends them all and switches to new signing keys with the old ones withdrawn.
    gallery, secret = make_client(services, scope="openid profile offline_access", trusted=True, introspect=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile offline_access")
    tokens = exchange(client, gallery, secret, code).json
    old_kids = {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    assert client.get("/api/me").status_code == 200

    ended = services.sessions.revoke_everyone()
    done = services.oidc.start_afresh(actor="test")

    assert ended == 1 and done["revoked_tokens"] == 1 and set(done["withdrawn_keys"]) == old_kids
    assert client.get("/api/me").status_code == 401
    assert refresh(client, gallery, secret, tokens["refresh_token"]).json["error"] == "invalid_grant"
    assert introspect(client, gallery, secret, tokens["access_token"]).json == {"active": False}
    published = {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    assert published == set(done["signing_keys"]) and not published & old_kids


def test_introspection_names_the_users_groups_for_the_resource_servers_rules(client, services):
    make_user(services, "alice", groups=["photos"])
    make_user(services, "bob")
    gallery, secret = make_client(services, introspect=True, scope="openid")
    for username, groups in (("alice", ["photos"]), ("bob", [])):
        http = client.application.test_client()
        logged_in(http, username)
        code, _, _ = get_code(http, gallery, scope="openid")
        token = exchange(http, gallery, secret, code).json["access_token"]
        info = introspect(client, gallery, secret, token).json
        assert info["active"] is True and info["username"] == username and info["groups"] == groups


def test_one_client_authentication_method_in_the_form_too(client, services):
    """Found by the black-box review: a secret and a client assertion in one form were taken
    (the assertion ignored), and an assertion's client won over a form client_id naming
    another. RFC 6749 §2.3: one method per request; RFC 7523 §3: a client_id sent names the
    assertion's client. Refused with 400 invalid_request, as HTTP Basic with form credentials is."""
    indexer, secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read")
    key = RSAKey.generate_key(2048)
    key.ensure_kid()
    signer, _ = make_client(services, "Signer", redirect_uris=(), grants=["client_credentials"], scope="photos:read",
                            token_endpoint_auth_method="private_key_jwt",
                            jwks={"keys": [key.as_dict(private=False)]})
    audience = services.settings.issuer + "/oauth/token"
    assertion = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    tried = {
        "secret and assertion": {"client_id": signer.client_id, "client_secret": secret,
                                 "client_assertion": _assertion(key, signer.client_id, audience, "mix-1")},
        "secret and assertion, no client_id": {"client_secret": secret,
                                               "client_assertion": _assertion(key, signer.client_id, audience,
                                                                              "mix-4")},
        "assertion of another client": {"client_id": indexer.client_id,
                                        "client_assertion": _assertion(key, signer.client_id, audience, "mix-2")},
    }
    before = db.session.scalar(select(func.count()).select_from(OAuthToken))
    for name, form in tried.items():
        answer = client.post("/oauth/token", data={"grant_type": "client_credentials", **assertion, **form})
        assert answer.status_code == 400 and answer.json["error"] == "invalid_request", (name, answer.json)
        introspected = client.post("/oauth/introspect", data={"token": "x", **assertion, **form})
        assert introspected.status_code == 400 and introspected.json["error"] == "invalid_request", name
    assert db.session.scalar(select(func.count()).select_from(OAuthToken)) == before
    # Its own client_id beside its assertion is fine.
    own = client.post("/oauth/token", data={
        "grant_type": "client_credentials", **assertion, "client_id": signer.client_id,
        "client_assertion": _assertion(key, signer.client_id, audience, "mix-3")})
    assert own.status_code == 200, own.json


CLIENT_ENDPOINTS = ("/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/device_authorization")


@pytest.mark.parametrize("tail", [", x", "==", "!!", ";", ""], ids=["comma", "padding", "bang", "semicolon",
                                                                    "unpadded"])
def test_malformed_basic_credentials_are_refused_not_read_half(client, services, tail):
    """Found by the second black-box review: werkzeug reads `Basic <base64>, x` as no credentials,
    so the one-method check let it pass, while Authlib decoded what it could of it and tried it
    before the form's secret: a wrong guess fell back to the form, unthrottled and unaudited.
    Now it is a failed client authentication (401, counted and audited), whatever else is sent."""
    indexer, indexer_secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                          scope="photos:read", introspect=True)
    resource, resource_secret = make_client(services, "Resource", redirect_uris=(),
                                            grants=["client_credentials"], scope="photos:read")
    encoded = base64.b64encode(f"{resource.client_id}:{resource_secret}".encode()).decode()
    if tail == "":
        encoded = encoded.rstrip("=")
        assert encoded != base64.b64encode(f"{resource.client_id}:{resource_secret}".encode()).decode()
    header = {"Authorization": f"Basic {encoded}{tail}"}
    tried = 0
    for path in CLIENT_ENDPOINTS:
        for form in ({}, {"client_secret": indexer_secret},
                     {"client_id": indexer.client_id, "client_secret": indexer_secret}):
            answer = client.post(path, headers=header, data={"grant_type": "client_credentials", "token": "x", **form})
            assert answer.status_code == 401 and answer.json["error"] == "invalid_client", (path, form, answer.json)
            tried += 1
    failures = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "client.auth_failed"))
    assert failures == tried
    assert db.session.scalar(select(func.count()).select_from(OAuthToken)) == 0


def test_an_unknown_client_is_answered_as_a_wrong_secret_is(client, services):
    """Found by the second black-box review: an unknown client_id in the form got 400, a known
    one with a wrong secret 401, and Basic's WWW-Authenticate said "does not exist"."""
    indexer, _ = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                             scope="photos:read", introspect=True)

    def answer(path, client_id, how):
        if how == "basic":
            return client.post(path, data={"grant_type": "client_credentials", "token": "x"},
                               auth=(client_id, "wrong-secret"))
        form = {"client_id": client_id, **({"client_secret": "wrong-secret"} if how == "post" else {})}
        return client.post(path, data={"grant_type": "client_credentials", "token": "x", **form})

    for path in CLIENT_ENDPOINTS:
        for how in ("basic", "post", "client_id alone"):
            known, unknown = answer(path, indexer.client_id, how), answer(path, "no-such-client-id", how)
            seen = [(r.status_code, r.json, r.headers.get("WWW-Authenticate")) for r in (known, unknown)]
            assert seen[0] == seen[1], (path, how, seen)
            assert known.status_code == 401 and known.json["error"] == "invalid_client", (path, how)


def test_failed_authentications_do_not_use_up_what_an_address_may_start_at_the_device_endpoint(client, services):
    """Found by the second black-box review: the device endpoint counted every request against
    its address's allowance before authenticating, so 21 wrong secrets locked out the clients
    that authenticate. Failures are the client throttle's; the allowance counts starts."""
    device, secret = make_client(services, "TV", redirect_uris=(), scope="openid",
                                 grants=["urn:ietf:params:oauth:grant-type:device_code"])
    for _ in range(25):
        wrong = client.post("/oauth/device_authorization", data={"scope": "openid"}, auth=(device.client_id, "wrong"))
        assert wrong.status_code in (401, 429)
    started = client.post("/oauth/device_authorization", data={"scope": "openid"}, auth=(device.client_id, secret))
    assert started.status_code == 200, started.json
    assert "user_code" in started.json


def test_a_client_assertion_for_the_par_or_device_endpoint_is_accepted_there(client, services):
    """RFC 9126 §2: the PAR endpoint's URL is an audience the server must accept; so is the device
    authorization endpoint's, where the assertion is sent."""
    key = RSAKey.generate_key(2048)
    key.ensure_kid()
    signer, _ = make_client(services, "Signer", redirect_uris=("https://signer.example/cb",), scope="openid",
                            grants=["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
                            token_endpoint_auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    base = services.settings.issuer.rstrip("/")
    kind = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    par = client.post("/oauth/par", data={
        **kind, "client_assertion": _assertion(key, signer.client_id, base + "/oauth/par", "aud-par"),
        "response_type": "code", "client_id": signer.client_id, "redirect_uri": "https://signer.example/cb",
        "scope": "openid", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert par.status_code == 201, par.json
    device = client.post("/oauth/device_authorization", data={
        **kind, "scope": "openid",
        "client_assertion": _assertion(key, signer.client_id, base + "/oauth/device_authorization", "aud-dev")})
    assert device.status_code == 200, device.json
