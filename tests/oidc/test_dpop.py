"""DPoP (RFC 9449) through the test client: the nonce dance, bound tokens at userinfo, /api/me,
introspection and forward-auth, refresh of a public client, dpop_jkt, PAR with a proof; and
the attacks: a stolen bound token without the key, a replayed proof (also at another
instance), a proof for another URL or method, stale or future iat, the wrong typ or alg, a
private key in the header, a signature by another key, a missing or wrong ath."""

from __future__ import annotations

import json

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from authserver import create_app
from authserver.access_rules import load_rules, parse_host_patterns, parse_networks
from authserver.extensions import db as _db
from tests.helpers.csrf import csrf_token
from tests.helpers.dpop import DPoPKey
from tests.helpers.factories import make_client, make_user
from tests.helpers.html import form_action
from tests.helpers.oidc import DEFAULT_VERIFIER, REDIRECT, get_code, logged_in, query_of

BASE = "http://localhost"
TOKEN_URL = BASE + "/oauth/token"
USERINFO_URL = BASE + "/oauth/userinfo"


@pytest.fixture
def alice(services):
    return make_user(services, "alice")


@pytest.fixture
def phone(services):
    """A public client: its refresh tokens are bound to its DPoP key."""
    client, _ = make_client(services, "Phone app", public=True, scope="openid profile offline_access")
    return client


@pytest.fixture
def key(clock):
    return DPoPKey(clock=clock)


def token_request(http, client, key, data, *, secret=None, proof=None):
    """A token request with a DPoP proof, answering the server's nonce challenge once."""
    data = dict(data)
    auth = (client.client_id, secret) if secret else None
    if secret is None:
        data["client_id"] = client.client_id
    for _ in range(2):
        headers = {"DPoP": proof or key.proof("POST", TOKEN_URL)}
        response = http.post("/oauth/token", data=data, headers=headers, auth=auth)
        key.remember_nonce(response)
        if response.status_code != 400 or response.get_json()["error"] != "use_dpop_nonce" or proof:
            return response
    return response


def code_for(http, client, **params):
    code, _, _ = get_code(http, client, scope=params.pop("scope", "openid profile offline_access"), **params)
    assert code
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": DEFAULT_VERIFIER}


def bound_tokens(http, client, key, **params) -> dict:
    response = token_request(http, client, key, code_for(http, client, **params))
    assert response.status_code == 200, response.text
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    return body


def userinfo(http, token, proof=None, scheme="DPoP"):
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return http.get("/oauth/userinfo", headers=headers)


# -- discovery and the token endpoint ----------------------------------------------------


def test_discovery_lists_the_proof_algorithms(client):
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"]


def test_the_token_endpoint_asks_for_its_nonce_then_binds_the_tokens(client, alice, phone, key):
    logged_in(client, "alice")
    data = code_for(client, phone)
    first = client.post("/oauth/token", data={**data, "client_id": phone.client_id},
                        headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert first.status_code == 400 and first.get_json()["error"] == "use_dpop_nonce"
    assert first.headers["DPoP-Nonce"]
    key.remember_nonce(first)
    second = client.post("/oauth/token", data={**data, "client_id": phone.client_id},
                         headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert second.status_code == 200, second.text
    body = second.get_json()
    assert body["token_type"] == "DPoP" and body["refresh_token"]
    assert second.headers["DPoP-Nonce"]


@pytest.mark.parametrize("kind", ["OKP", "RSA"])
def test_other_key_types_bind_too(client, alice, phone, clock, kind):
    logged_in(client, "alice")
    assert bound_tokens(client, phone, DPoPKey(kind, clock=clock))["token_type"] == "DPoP"


def test_without_a_proof_the_tokens_are_bearer_tokens(client, alice, phone):
    logged_in(client, "alice")
    data = code_for(client, phone)
    response = client.post("/oauth/token", data={**data, "client_id": phone.client_id})
    assert response.get_json()["token_type"] == "Bearer"
    assert "DPoP-Nonce" not in response.headers


def bad_proofs(key: DPoPKey, clock):
    other = ECKey.generate_key("P-256")
    now = int(clock.now().timestamp())
    return {
        "wrong typ": key.proof("POST", TOKEN_URL, header={"typ": "JWT"}),
        "HS256": jwt.encode({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}},
                            {"jti": "x1", "htm": "POST", "htu": TOKEN_URL, "iat": now, "nonce": key.nonce},
                            OctKey.import_key("secret-secret-secret-secret-32b!"), algorithms=["HS256"]),
        "private key in header": key.proof("POST", TOKEN_URL, jwk=key.key.as_dict(private=True)),
        "signed by another key": key.proof("POST", TOKEN_URL, key=other),
        "another URL": key.proof("POST", BASE + "/oauth/revoke"),
        "another host": key.proof("POST", "http://evil.example/oauth/token"),
        "another method": key.proof("GET", TOKEN_URL),
        "stale iat": key.proof("POST", TOKEN_URL, claims={"iat": now - 600}),
        "future iat": key.proof("POST", TOKEN_URL, claims={"iat": now + 600}),
        "iat as text": key.proof("POST", TOKEN_URL, claims={"iat": str(now)}),
        "no jti": key.proof("POST", TOKEN_URL, claims={"jti": None}),
        "small RSA key": DPoPKey("RSA").proof("POST", TOKEN_URL, key=RSAKey.generate_key(1024, private=True),
                                              jwk=None, nonce=key.nonce),
        "not a JWT": "not-a-jwt",
        "a nonce this server did not issue": key.proof("POST", TOKEN_URL, nonce="bm90LW91cnM"),
    }


def test_bad_proofs_at_the_token_endpoint_are_refused_and_leave_the_code_unused(client, alice, phone, key, clock):
    logged_in(client, "alice")
    data = code_for(client, phone)
    key.remember_nonce(client.post("/oauth/token", data={**data, "client_id": phone.client_id},
                                   headers={"DPoP": key.proof("POST", TOKEN_URL)}))
    for reason, proof in bad_proofs(key, clock).items():
        response = client.post("/oauth/token", data={**data, "client_id": phone.client_id}, headers={"DPoP": proof})
        assert response.status_code == 400, reason
        assert response.get_json()["error"] in ("invalid_dpop_proof", "use_dpop_nonce"), reason
    # Two proofs in one request are refused too.
    response = client.post("/oauth/token", data={**data, "client_id": phone.client_id},
                           headers=[("DPoP", key.proof("POST", TOKEN_URL)), ("DPoP", key.proof("POST", TOKEN_URL))])
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_dpop_proof"
    assert token_request(client, phone, key, data).status_code == 200


def test_a_replayed_proof_is_refused(client, alice, phone, key):
    logged_in(client, "alice")
    first = token_request(client, phone, key, code_for(client, phone))
    assert first.status_code == 200
    proof = key.proof("POST", TOKEN_URL)
    refresh = {"grant_type": "refresh_token", "refresh_token": first.get_json()["refresh_token"]}
    assert token_request(client, phone, key, refresh, proof=proof).status_code == 200
    again = token_request(client, phone, key, {**refresh, "refresh_token": "x"}, proof=proof)
    assert again.status_code == 400 and "used before" in again.get_json()["error_description"]


def test_a_proof_is_used_once_across_instances(client, services, alice, phone, key):
    logged_in(client, "alice")
    tokens = bound_tokens(client, phone, key)
    other = create_app(services.settings, clock=services.clock)
    try:
        proof = key.proof("GET", USERINFO_URL, access_token=tokens["access_token"])
        assert userinfo(other.test_client(), tokens["access_token"], proof).status_code == 200
        assert userinfo(client, tokens["access_token"], proof).status_code == 401
    finally:
        with other.app_context():
            _db.engine.dispose()


def test_a_stale_nonce_is_answered_with_a_new_one(client, alice, phone, key, clock):
    logged_in(client, "alice")
    bound_tokens(client, phone, key)
    clock.advance(seconds=700)
    data = code_for(client, phone)
    stale = client.post("/oauth/token", data={**data, "client_id": phone.client_id},
                        headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert stale.get_json()["error"] == "use_dpop_nonce" and stale.headers["DPoP-Nonce"] != key.nonce


# -- a bound token at the resources ---------------------------------------------------------


def test_userinfo_wants_the_proof_of_the_bound_key(client, alice, phone, key, clock):
    logged_in(client, "alice")
    access = bound_tokens(client, phone, key)["access_token"]
    assert userinfo(client, access, key.proof("GET", USERINFO_URL, access_token=access)).status_code == 200
    assert userinfo(client, access, key.proof("POST", USERINFO_URL, access_token=access)).status_code == 401
    thief = DPoPKey(clock=clock)
    refused = {
        "as a bearer token": userinfo(client, access, scheme="Bearer"),
        "as a bearer token in the form": client.post("/oauth/userinfo", data={"access_token": access}),
        "without a proof": userinfo(client, access),
        "a thief's key": userinfo(client, access, thief.proof("GET", USERINFO_URL, access_token=access)),
        "no ath": userinfo(client, access, key.proof("GET", USERINFO_URL)),
        "ath of another token": userinfo(client, access, key.proof("GET", USERINFO_URL, access_token="other")),
        "another URL": userinfo(client, access, key.proof("GET", BASE + "/api/me", access_token=access)),
        "stale iat": userinfo(client, access, key.proof("GET", USERINFO_URL, access_token=access,
                                                         claims={"iat": int(clock.now().timestamp()) - 900})),
    }
    for reason, response in refused.items():
        assert response.status_code == 401, reason
        assert response.headers["WWW-Authenticate"].startswith("DPoP "), reason
        assert response.get_json()["error"] in ("invalid_token", "invalid_dpop_proof"), reason


def test_an_unbound_token_is_not_accepted_as_dpop(client, alice, phone, key):
    logged_in(client, "alice")
    data = code_for(client, phone)
    access = client.post("/oauth/token", data={**data, "client_id": phone.client_id}).get_json()["access_token"]
    assert userinfo(client, access, scheme="Bearer").status_code == 200
    response = userinfo(client, access, key.proof("GET", USERINFO_URL, access_token=access))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_api_me_honours_the_binding(client, services, alice, clock):
    app, _ = make_client(services, "Own app", public=True, first_party=True, scope="openid profile")
    key = DPoPKey(clock=clock)
    logged_in(client, "alice")
    access = bound_tokens(client, app, key, scope="openid profile")["access_token"]
    me = BASE + "/api/me"
    fine = client.get("/api/me", headers={"Authorization": f"DPoP {access}",
                                          "DPoP": key.proof("GET", me, access_token=access)})
    assert fine.status_code == 200 and fine.get_json()["username"] == "alice"
    client.delete_cookie("authserver_session")
    stolen = client.get("/api/me", headers={"Authorization": f"Bearer {access}"})
    assert stolen.status_code == 401 and stolen.headers["WWW-Authenticate"].startswith("DPoP ")
    thief = DPoPKey(clock=clock)
    assert client.get("/api/me", headers={"Authorization": f"DPoP {access}",
                                          "DPoP": thief.proof("GET", me, access_token=access)}).status_code == 401


def test_introspection_and_jwt_access_tokens_carry_the_key(client, services, alice, clock):
    jwt_app, secret = make_client(services, "JWT app", access_token_format="jwt", introspect=True,
                                  scope="openid profile")
    key = DPoPKey(clock=clock)
    logged_in(client, "alice")
    response = token_request(client, jwt_app, key, code_for(client, jwt_app, scope="openid profile"), secret=secret)
    access = response.get_json()["access_token"]
    assert json.loads(jws.extract_compact(access.encode()).payload)["cnf"] == {"jkt": key.jkt}
    described = client.post("/oauth/introspect", data={"token": access}, auth=(jwt_app.client_id, secret)).get_json()
    assert described["active"] and described["cnf"] == {"jkt": key.jkt} and described["token_type"] == "DPoP"


# -- refresh ----------------------------------------------------------------------------------


def test_a_public_clients_refresh_token_is_bound_to_its_key(client, alice, phone, key, clock):
    logged_in(client, "alice")
    refresh = {"grant_type": "refresh_token", "refresh_token": bound_tokens(client, phone, key)["refresh_token"]}
    without = client.post("/oauth/token", data={**refresh, "client_id": phone.client_id})
    assert without.status_code == 400 and without.get_json()["error"] == "invalid_dpop_proof"
    thief = token_request(client, phone, DPoPKey(clock=clock), refresh)
    assert thief.status_code == 400 and thief.get_json()["error"] == "invalid_dpop_proof"
    rotated = token_request(client, phone, key, refresh)
    assert rotated.status_code == 200 and rotated.get_json()["token_type"] == "DPoP"


def test_a_confidential_clients_refresh_token_is_not_bound(client, services, alice, key):
    gallery, secret = make_client(services, "Gallery", scope="openid profile offline_access")
    logged_in(client, "alice")
    data = code_for(client, gallery)
    first = token_request(client, gallery, key, data, secret=secret).get_json()
    assert first["token_type"] == "DPoP"
    plain = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                        auth=(gallery.client_id, secret))
    assert plain.status_code == 200 and plain.get_json()["token_type"] == "Bearer"


# -- binding the code: dpop_jkt, PAR, clients that must use DPoP --------------------------------


def test_dpop_jkt_binds_the_code_to_the_key(client, alice, phone, key, clock):
    logged_in(client, "alice")
    data = code_for(client, phone, dpop_jkt=key.jkt)
    assert client.post("/oauth/token", data={**data, "client_id": phone.client_id}).status_code == 400
    thief = token_request(client, phone, DPoPKey(clock=clock), data)
    assert thief.status_code == 400 and thief.get_json()["error"] == "invalid_dpop_proof"
    assert token_request(client, phone, key, data).status_code == 200


def test_a_malformed_dpop_jkt_is_refused_back_to_the_client(client, alice, phone):
    logged_in(client, "alice")
    _, query, _ = get_code(client, phone, scope="openid", dpop_jkt="short")
    assert query["error"] == "invalid_request" and "dpop_jkt" in query["error_description"]


def test_a_push_with_a_proof_binds_the_code(client, alice, phone, key, clock):
    from tests.helpers.oidc import authorize_params
    logged_in(client, "alice")
    pushed = client.post("/oauth/par", data=authorize_params(phone, scope="openid"),
                         headers={"DPoP": key.proof("POST", BASE + "/oauth/par")})
    assert pushed.status_code == 201, pushed.text
    page = client.get("/oauth/authorize", query_string={"client_id": phone.client_id,
                                                        "request_uri": pushed.get_json()["request_uri"]})
    response = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "allow": "x"})
    code = query_of(response.headers["Location"])["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": DEFAULT_VERIFIER}
    assert token_request(client, phone, DPoPKey(clock=clock), data).status_code == 400
    assert token_request(client, phone, key, data).status_code == 200
    other = client.post("/oauth/par", data=authorize_params(phone, dpop_jkt=DPoPKey(clock=clock).jkt),
                        headers={"DPoP": key.proof("POST", BASE + "/oauth/par")})
    assert other.status_code == 400 and other.get_json()["error"] == "invalid_dpop_proof"


def test_a_client_registered_for_dpop_gets_no_bearer_tokens(client, services, alice, key):
    strict, _ = make_client(services, "Strict phone", public=True, require_dpop=True, scope="openid")
    logged_in(client, "alice")
    data = code_for(client, strict, scope="openid")
    plain = client.post("/oauth/token", data={**data, "client_id": strict.client_id})
    assert plain.status_code == 400 and plain.get_json()["error"] == "invalid_dpop_proof"
    assert token_request(client, strict, key, data).get_json()["token_type"] == "DPoP"


# -- forward-auth ----------------------------------------------------------------------------


def test_forward_auth_checks_the_proof_against_the_original_request(services, database_urls, backend, alice,
                                                                    tmp_path, clock):
    settings = services.settings.replace(
        trusted_proxies=parse_networks("127.0.0.1/32"),
        forward_auth_rules=load_rules(json.dumps([{"host": "photos.test", "policy": "one_factor"}]), "deny",
                                      base=tmp_path),
        forward_auth_domains=parse_host_patterns(".photos.test"),
    )
    app = create_app(settings, clock=clock)
    try:
        http = app.test_client()
        own, _ = make_client(services, "Own app", public=True, first_party=True, scope="openid profile")
        key = DPoPKey(clock=clock)
        logged_in(http, "alice")
        access = bound_tokens(http, own, key, scope="openid profile")["access_token"]
        http.delete_cookie("authserver_session")
        original = "https://photos.test/album/7"
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "photos.test", "X-Forwarded-Uri": "/album/7?x=1",
                     "X-Forwarded-Method": "GET", "Authorization": f"DPoP {access}"}

        def ask(proof, **changes):
            return http.get("/api/authz/forward-auth", headers={**forwarded, "DPoP": proof, **changes})

        allowed = ask(key.proof("GET", original, access_token=access))
        assert allowed.status_code == 200 and allowed.headers["Remote-User"] == "alice"
        assert ask(key.proof("GET", BASE + "/api/authz/forward-auth", access_token=access)).status_code == 401
        assert ask(key.proof("POST", original, access_token=access)).status_code == 401
        no_method = http.get("/api/authz/forward-auth", headers={
            **{k: v for k, v in forwarded.items() if k != "X-Forwarded-Method"},
            "DPoP": key.proof("GET", original, access_token=access)})
        assert no_method.status_code == 401
        quoted = ask(key.proof("GET", original, access_token=access), **{"X-Forwarded-Uri": '/album/"7"\\x'})
        assert quoted.status_code in (400, 401), quoted.text  # the refusal names the URL: never a 500
        bearer = http.get("/api/authz/forward-auth", headers={**forwarded, "Authorization": f"Bearer {access}"})
        assert bearer.status_code == 401 and "Remote-User" not in bearer.headers
    finally:
        with app.app_context():
            _db.engine.dispose()


def test_client_credentials_tokens_bind_and_the_device_grant_takes_proofs(client, services, key):
    service, secret = make_client(services, "Uploader", redirect_uris=(), grants=("client_credentials",),
                                  scope="openid", introspect=True)
    response = token_request(client, service, key, {"grant_type": "client_credentials"}, secret=secret)
    assert response.status_code == 200, response.text
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    described = client.post("/oauth/introspect", data={"token": body["access_token"]},
                            auth=(service.client_id, secret)).get_json()
    assert described["cnf"] == {"jkt": key.jkt}
    frame, _ = make_client(services, "Frame", redirect_uris=(), public=True, grants=("device_code",),
                           scope="openid")
    started = client.post("/oauth/device_authorization", data={"client_id": frame.client_id, "scope": "openid"})
    polled = token_request(client, frame, key, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                                "device_code": started.get_json()["device_code"]})
    assert polled.status_code == 400 and polled.get_json()["error"] == "authorization_pending"
