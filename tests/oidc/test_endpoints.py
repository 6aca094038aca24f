"""Userinfo, introspection (RFC 7662), revocation (RFC 7009), bearer identity, consents API."""

import pytest

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.oidc import authorize_params, decode_id_token, exchange, get_code, logged_in


@pytest.fixture
def alice(services, db):
    user = make_user(services, "alice", groups=["family"], admin=True)
    user.attributes = {"quota_gb": 50}
    db.session.commit()
    return user


@pytest.fixture
def issued(client, services, alice):
    """A gallery client, its secret, and a token response for alice."""
    # Both relying party and resource server (like mod_auth_openidc): it introspects its own tokens.
    gallery, secret = make_client(services, introspect=True,
                                  extra_claims=["immich_role=admin_flag:admin:user", "quota=attribute:quota_gb"])
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile email groups")
    body = exchange(client, gallery, secret, code).json
    client.delete_cookie("authserver_session")
    return gallery, secret, body


def bearer(token):
    return {"Authorization": "Bearer " + token}


def test_userinfo_get_and_post_with_claims_by_scope_and_extra_claims(client, issued, alice):
    _, _, body = issued
    info = client.get("/oauth/userinfo", headers=bearer(body["access_token"])).json
    assert info == {
        "sub": alice.sub, "name": "Alice", "preferred_username": "alice", "email": "alice@photos.example",
        "email_verified": False, "groups": ["family"], "immich_role": "admin", "quota": 50,
        "updated_at": int(alice.updated_at.timestamp()),
    }
    assert client.post("/oauth/userinfo", headers=bearer(body["access_token"])).json == info
    assert client.post("/oauth/userinfo", data={"access_token": body["access_token"]}).json == info


def test_userinfo_releases_only_granted_scopes(client, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid")
    body = exchange(client, gallery, secret, code).json
    assert client.get("/oauth/userinfo", headers=bearer(body["access_token"])).json == {"sub": alice.sub}


def test_userinfo_refuses_missing_bad_and_non_openid_tokens(client, services, issued):
    assert client.get("/oauth/userinfo").status_code == 401
    bad = client.get("/oauth/userinfo", headers=bearer("nope"))
    assert bad.status_code == 401 and bad.json["error"] == "invalid_token"
    assert "Bearer" in bad.headers["WWW-Authenticate"]
    service, secret = make_client(services, "svc", redirect_uris=(), grants=["client_credentials"], scope="photos:read")
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(service.client_id, secret)).json
    assert client.get("/oauth/userinfo", headers=bearer(token["access_token"])).status_code == 403


def test_expired_access_token_is_refused(client, clock, issued):
    _, _, body = issued
    clock.advance(seconds=3601)
    assert client.get("/oauth/userinfo", headers=bearer(body["access_token"])).status_code == 401


def test_introspection_active_answer(client, services, issued, alice):
    gallery, secret, body = issued
    info = client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=(gallery.client_id, secret)).json
    assert info["active"] is True
    assert info["scope"] == "openid profile email groups" and info["client_id"] == gallery.client_id
    assert info["sub"] == alice.sub and info["username"] == "alice" and info["token_type"] == "Bearer"
    assert info["iss"] == services.settings.issuer and info["aud"] == gallery.client_id
    assert info["exp"] - info["iat"] == 3600


def test_introspection_by_a_resource_server_the_token_names(client, services, alice):
    resource, rs_secret = make_client(services, "Photo API", redirect_uris=(), grants=["client_credentials"],
                                      scope="photos:read", introspect=True)
    gallery, secret = make_client(services, "Gallery", audiences=[resource.client_id])
    from authserver.oidc.clients import ClientError

    with pytest.raises(ClientError, match="not a registered client"):
        make_client(services, "Elsewhere", audiences=["no-such-client"])
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    body = exchange(client, gallery, secret, code).json
    info = client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=(resource.client_id, rs_secret))
    assert info.json["active"] is True and info.json["aud"] == [gallery.client_id, resource.client_id]
    # The refresh token is the gallery's alone.
    hidden = client.post("/oauth/introspect", data={"token": body["refresh_token"]},
                         auth=(resource.client_id, rs_secret))
    assert hidden.json == {"active": False}


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "pkid_key", "nonsense"])
def test_introspection_ignores_unknown_and_wrong_hints(client, issued, hint):
    gallery, secret, body = issued
    for token in (body["access_token"], body["refresh_token"]):
        response = client.post("/oauth/introspect", data={"token": token, "token_type_hint": hint},
                               auth=(gallery.client_id, secret))
        assert response.status_code == 200 and response.json["active"] is True


@pytest.mark.parametrize("token", ["unknown", "x" * 4000])
def test_inactive_is_exactly_active_false(client, issued, token):
    gallery, secret, _ = issued
    response = client.post("/oauth/introspect", data={"token": token}, auth=(gallery.client_id, secret))
    assert response.status_code == 200 and response.json == {"active": False}


def test_introspection_requires_client_authentication(client, services, issued):
    gallery, secret, body = issued
    assert client.post("/oauth/introspect", data={"token": body["access_token"]}).status_code == 401
    wrong = client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=(gallery.client_id, "bad"))
    assert wrong.status_code == 401 and wrong.json["error"] == "invalid_client"
    public, _ = make_client(services, "App", public=True)
    by_public = client.post("/oauth/introspect", data={"token": body["access_token"], "client_id": public.client_id})
    assert by_public.status_code in (400, 401)
    missing = client.post("/oauth/introspect", data={}, auth=(gallery.client_id, secret))
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"


def test_revocation_of_access_token(client, issued):
    gallery, secret, body = issued
    response = client.post("/oauth/revoke", data={"token": body["access_token"]}, auth=(gallery.client_id, secret))
    assert response.status_code == 200
    assert client.get("/oauth/userinfo", headers=bearer(body["access_token"])).status_code == 401


def test_revoking_a_refresh_token_revokes_its_access_tokens(client, issued):
    gallery, secret, body = issued
    assert client.post("/oauth/revoke", data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                       auth=(gallery.client_id, secret)).status_code == 200
    info = client.post("/oauth/introspect", data={"token": body["access_token"]}, auth=(gallery.client_id, secret))
    assert info.json == {"active": False}
    again = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                        auth=(gallery.client_id, secret))
    assert again.json["error"] == "invalid_grant"


def test_revocation_of_unknown_token_is_200_and_needs_client_auth(client, issued):
    gallery, secret, _ = issued
    assert client.post("/oauth/revoke", data={"token": "unknown", "token_type_hint": "whatever"},
                       auth=(gallery.client_id, secret)).status_code == 200
    assert client.post("/oauth/revoke", data={"token": "unknown"}, auth=(gallery.client_id, "bad")).status_code == 401


def test_another_client_cannot_revoke_my_token(client, services, issued):
    _, _, body = issued
    other, secret = make_client(services, "Other")
    client.post("/oauth/revoke", data={"token": body["access_token"]}, auth=(other.client_id, secret))
    assert client.get("/oauth/userinfo", headers=bearer(body["access_token"])).status_code == 200


def test_api_me_with_an_access_token(client, services, alice):
    official, secret = make_client(services, "Official app", first_party=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, official, scope="openid profile email groups")
    body = exchange(client, official, secret, code).json
    client.delete_cookie("authserver_session")
    gallery = official
    me = client.get("/api/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json["username"] == "alice" and me.json["auth_method"] == "oauth_token"
    assert me.json["scopes"] == ["email", "groups", "openid", "profile"] and me.json["client_id"] == gallery.client_id
    bad = client.get("/api/me", headers=bearer("nope"))
    assert bad.status_code == 401 and bad.json["error"] == "invalid_token"


def test_consents_listed_and_revoked_with_the_clients_tokens(client, services, alice):
    gallery, secret = make_client(services, "Photo Gallery")
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile")
    body = exchange(client, gallery, secret, code).json
    listed = client.get("/api/me/consents").json["consents"]
    assert listed == [{"client_id": gallery.client_id, "client_name": "Photo Gallery", "scopes": ["openid", "profile"],
                       "granted_at": listed[0]["granted_at"], "updated_at": listed[0]["updated_at"]}]
    app_only = client.application.test_client()
    # A third-party app's token is not a credential for this server's API at all.
    as_the_app = app_only.delete("/api/me/consents/" + gallery.client_id, headers=bearer(body["access_token"]))
    assert as_the_app.status_code == 401
    assert client.delete("/api/me/consents/" + gallery.client_id).status_code == 200
    assert client.get("/api/me/consents").json == {"consents": []}
    assert client.delete("/api/me/consents/" + gallery.client_id).status_code == 404
    refreshed = client.post("/oauth/token", auth=(gallery.client_id, secret),
                            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert refreshed.json["error"] == "invalid_grant"
    assert client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid")).status_code == 200


def test_consent_api_needs_a_login(client):
    assert client.get("/api/me/consents").status_code == 401


def test_account_page_lists_connected_apps_and_revokes_them(client, services, alice):
    gallery, secret = make_client(services, "Photo Gallery")
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile")
    body = exchange(client, gallery, secret, code).json
    page = client.get("/account")
    assert "Photo Gallery" in page.text and "openid profile" in page.text
    action = f"/account/apps/{gallery.client_id}/revoke"
    assert client.post(action).status_code == 400
    response = client.post(action, data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 303
    assert "Photo Gallery" not in client.get("/account").text
    assert client.get("/oauth/userinfo", headers=bearer(body["access_token"])).status_code == 401
    assert client.get("/oauth/authorize", query_string=authorize_params(gallery, scope="openid")).status_code == 200


def test_the_profile_scope_releases_the_standard_profile_claims_that_are_filled_in(client, services, alice, clock):
    clock.advance(seconds=90)
    changed = services.accounts.update_profile(alice, name="Alice Liddell", email=alice.email, actor="test", claims={
        "given_name": "Alice", "family_name": "Liddell", "nickname": "Al", "picture": "https://photos.example/a.jpg",
        "website": "https://alice.example/", "locale": "en_GB", "zoneinfo": "Europe/London"})
    assert set(changed) == {"name", "profile"}
    gallery, secret = make_client(services, trusted=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile")
    body = exchange(client, gallery, secret, code).json
    info = client.get("/oauth/userinfo", headers=bearer(body["access_token"])).json
    assert {k: info[k] for k in ("given_name", "family_name", "nickname", "picture", "website", "locale",
                                 "zoneinfo")} == {
        "given_name": "Alice", "family_name": "Liddell", "nickname": "Al", "picture": "https://photos.example/a.jpg",
        "website": "https://alice.example/", "locale": "en-GB", "zoneinfo": "Europe/London"}
    assert info["updated_at"] == int(clock.now().timestamp())  # moved with the change
    claims = decode_id_token(services, body["id_token"])
    assert claims["given_name"] == "Alice" and claims["updated_at"] == info["updated_at"]
    # Cleared claims are left out, not sent empty.
    services.accounts.update_profile(alice, name="Alice Liddell", email=alice.email, actor="test", claims={})
    code, _, _ = get_code(client, gallery, scope="openid profile")
    again = exchange(client, gallery, secret, code).json
    assert "given_name" not in client.get("/oauth/userinfo", headers=bearer(again["access_token"])).json
    meta = client.get("/.well-known/openid-configuration").json
    assert {"given_name", "picture", "zoneinfo", "updated_at"} <= set(meta["claims_supported"])


@pytest.mark.parametrize("claim,value", [
    ("picture", "javascript:alert(1)"), ("picture", "data:image/png;base64,AAAA"), ("website", "//evil.example"),
    ("website", "https://user:pw@evil.example/"), ("website", "https://ex ample.org/"), ("locale", "english"),
    ("locale", "en-\nGB"), ("zoneinfo", "Mars/Olympus"), ("zoneinfo", "../../etc/passwd"),
    ("given_name", "Al\x1b[31mice"), ("nickname", "x" * 201), ("birthdate", "2000-01-01"),
])
def test_profile_claims_that_relying_parties_would_trust_are_checked(services, alice, claim, value):
    from authserver.accounts.service import InvalidUserInput

    with pytest.raises(InvalidUserInput) as refused:
        services.accounts.update_profile(alice, name="Alice", email=alice.email, actor="test", claims={claim: value})
    assert refused.value.field == claim
    assert not (services.accounts.get(alice.id).profile or {})


# -- the claims request parameter (OpenID Connect Core 5.5) ----------------------------------


def claims_flow(client, services, gallery, secret, claims, scope="openid"):
    import json

    code, query, _ = get_code(client, gallery, scope=scope, claims=json.dumps(claims))
    assert code, query
    return exchange(client, gallery, secret, code).json


def test_claims_asked_for_one_by_one_are_released_where_they_were_asked(client, services, alice):
    gallery, secret = make_client(services, scope="openid profile email")
    logged_in(client, "alice")
    body = claims_flow(client, services, gallery, secret,
                       {"userinfo": {"name": {"essential": True}}, "id_token": {"email": None, "shoe_size": None}})
    info = client.get("/oauth/userinfo", headers=bearer(body["access_token"])).json
    assert info["name"] == "Alice" and "email" not in info and "preferred_username" not in info
    id_claims = decode_id_token(services, body["id_token"])
    assert id_claims["email"] == "alice@photos.example" and "name" not in id_claims and "shoe_size" not in id_claims
    # A refresh keeps what the authorization asked for.
    refreshed = client.post("/oauth/token", auth=(gallery.client_id, secret),
                            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}).json
    assert client.get("/oauth/userinfo", headers=bearer(refreshed["access_token"])).json["name"] == "Alice"
    assert client.get("/.well-known/openid-configuration").json["claims_parameter_supported"] is True


def test_claims_asked_for_need_consent_for_their_scope(client, services, alice):
    import json

    gallery, _ = make_client(services, scope="openid profile email")
    logged_in(client, "alice")
    get_code(client, gallery, scope="openid")  # consented to openid only
    page = client.get("/oauth/authorize", query_string=authorize_params(
        gallery, scope="openid", claims=json.dumps({"userinfo": {"email": None}})))
    assert page.status_code == 200 and "Your email address" in page.text  # asked again, naming what it is for


def test_claims_of_scopes_the_client_is_not_registered_for_are_never_released(client, services, alice):
    gallery, secret = make_client(services, scope="openid profile", trusted=True)
    logged_in(client, "alice")
    body = claims_flow(client, services, gallery, secret, {"userinfo": {"groups": {"essential": True}, "email": None}})
    info = client.get("/oauth/userinfo", headers=bearer(body["access_token"])).json
    assert "groups" not in info and "email" not in info


@pytest.mark.parametrize("claims", ["not json", "[1, 2]", '{"userinfo": ["name"]}', '{"userinfo": {"name": 1}}',
                                    '{"id_token": {"email": {"essential": "yes"}}}', "{" * 5000])
def test_a_malformed_claims_request_is_refused_back_to_the_client(client, services, alice, claims):
    gallery, _ = make_client(services, trusted=True)
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string=authorize_params(gallery, claims=claims))
    assert response.status_code == 302
    from tests.helpers.oidc import query_of

    query = query_of(response.headers["Location"])
    assert query["error"] == "invalid_request" and "claims" in query["error_description"] and "code" not in query


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_on_a_foreign_host_name_is_a_400_like_the_other_endpoints(client, method):
    response = client.open("/oauth/userinfo", method=method, headers={"Host": "evil.example"})
    assert response.status_code == 400 and response.get_json()["error"] == "insecure_transport"
