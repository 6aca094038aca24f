"""Key logins never ask for the second factor; the same user's password login does."""


import pytest

from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, key_headers, login, make_client, make_key, make_user


@pytest.fixture
def enrolled(services):
    user = make_user(services, "alice")
    device, _codes = enrol_totp(services, user)
    key_id, secret = make_key(services, user, scopes=["profile", "photos:read"])
    return user, device, key_id, secret


def test_password_login_of_enrolled_user_asks_for_totp(client, enrolled):
    response = login(client, "alice", DEFAULT_PASSWORD)
    assert response.status_code == 401
    assert response.json["error"] == "totp_required"


def test_json_key_login_skips_totp(client, enrolled):
    _user, _device, key_id, secret = enrolled
    response = client.post("/api/session/login", json={"username": key_id, "password": secret})
    assert response.status_code == 200, response.json
    assert response.json["auth_method"] == "api_key"
    me = client.get("/api/me")
    assert me.json["auth_method"] == "api_key"
    assert me.json["scopes"] == ["photos:read", "profile"]


@pytest.mark.parametrize("header", ["raw", "basic", "x-api-key"])
def test_key_headers_skip_totp(client, enrolled, header):
    _user, _device, key_id, secret = enrolled
    headers = key_headers(header, key_id, secret)
    response = client.get("/api/me", headers=headers)
    assert response.status_code == 200
    assert response.json["username"] == "alice"
    assert response.json["auth_method"] == "api_key"


def test_password_with_code_still_works_beside_keys(client, enrolled):
    _user, device, _key_id, _secret = enrolled
    response = client.post("/api/session/login",
                           json={"username": "alice", "password": DEFAULT_PASSWORD, "totp_code": device.code()})
    assert response.status_code == 200
    assert response.json["auth_method"] == "password+totp"


def test_key_login_session_cannot_sign_in_to_apps(client, services, enrolled):
    _user, _device, key_id, secret = enrolled
    gallery, _ = make_client(services, trusted=True)
    assert client.post("/api/session/login", json={"username": key_id, "password": secret}).status_code == 200
    response = client.get("/oauth/authorize", query_string={
        "response_type": "code", "client_id": gallery.client_id, "redirect_uri": "https://gallery.example/callback",
        "scope": "openid", "state": "s", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
