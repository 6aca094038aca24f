"""The account and admin key pages: plain forms with CSRF tokens; a secret is shown once."""

import re

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import login, make_key, make_user


def shown_token(html: str) -> str | None:
    match = re.search(r'id="minted-token" type="text" class="secret" readonly value="([^"]+)"', html)
    return match.group(1) if match else None


def test_pages_need_a_login(client):
    for path in ("/account/keys", "/admin/keys"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


def test_user_mints_a_key_sees_the_secret_once_and_can_use_it(client, services):
    make_user(services, "alice")
    login(client, "alice")
    page = client.get("/account/keys")
    assert page.status_code == 200 and "admin" not in re.findall(r'value="([^"]+)" type="checkbox"', page.text)
    response = client.post("/account/keys", data={"csrf_token": csrf_token(page.text), "name": "laptop",
                                                  "scopes": ["photos:read"], "cidrs": "", "expires_in_days": ""})
    assert response.status_code == 201
    token = shown_token(response.text)
    assert token and 'data-copy-target="minted-token"' in response.text
    assert response.headers["Cache-Control"] == "no-store"
    key_id, secret = token.split(":")
    again = client.get("/account/keys")
    assert key_id in again.text and secret not in again.text
    me = client.get("/api/me", headers={"X-API-Key": token})
    assert me.json["scopes"] == ["photos:read"]


def test_user_rotates_and_revokes_from_the_page(client, services):
    alice = make_user(services, "alice")
    key_id, old = make_key(services, alice)
    login(client, "alice")
    token = csrf_token(client.get("/account/keys").text)
    rotated = client.post(f"/account/keys/{key_id}/rotate", data={"csrf_token": token, "grace_seconds": "0"})
    assert rotated.status_code == 200
    new = shown_token(rotated.text)
    assert new.startswith(key_id + ":") and not new.endswith(old)
    revoked = client.post(f"/account/keys/{key_id}/revoke", data={"csrf_token": token, "confirm": "y"})
    assert revoked.status_code == 303
    assert client.get("/api/me", headers={"X-API-Key": new}).status_code == 401


def test_forms_without_csrf_token_are_refused(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    login(client, "alice")
    assert client.post("/account/keys", data={"name": "x", "scopes": ["profile"]}).status_code == 400
    assert client.post(f"/account/keys/{key_id}/rotate", data={"grace_seconds": "0"}).status_code == 400
    assert client.post(f"/account/keys/{key_id}/revoke", data={}).status_code == 400
    assert services.keys.verify(key_id, secret, ip=None)


def test_user_cannot_grant_admin_or_touch_anothers_key_from_the_page(client, services):
    bob = make_user(services, "bob")
    bobs_key, _ = make_key(services, bob)
    make_user(services, "alice")
    login(client, "alice")
    token = csrf_token(client.get("/account/keys").text)
    response = client.post("/account/keys", data={"csrf_token": token, "name": "x", "scopes": ["admin"]})
    assert response.status_code == 400 and shown_token(response.text) is None
    revoke = client.post(f"/account/keys/{bobs_key}/revoke", data={"csrf_token": token, "confirm": "y"})
    assert revoke.status_code == 404
    assert client.get("/admin/keys").status_code == 403


def test_admin_lists_filters_mints_and_audits_every_key(client, services):
    alice = make_user(services, "alice")
    carol = make_user(services, "carol")
    alice_key, _ = make_key(services, alice, name="alice-uploader")
    make_key(services, carol, name="carol-script")
    make_user(services, "root", admin=True)
    login(client, "root")
    page = client.get("/admin/keys")
    assert "alice-uploader" in page.text and "carol-script" in page.text
    filtered = client.get("/admin/keys?user=alice")
    assert "alice-uploader" in filtered.text and "carol-script" not in filtered.text
    minted = client.post("/admin/keys", data={"csrf_token": csrf_token(page.text), "user": "carol", "name": "by admin",
                                              "scopes": ["profile"]})
    assert minted.status_code == 201 and shown_token(minted.text)
    revoke = client.post(f"/admin/keys/{alice_key}/revoke", data={"csrf_token": csrf_token(page.text), "confirm": "y"})
    assert revoke.status_code == 303
    audit = client.get(f"/admin/keys/{alice_key}")
    assert audit.status_code == 200
    assert "admin.key.revoke" in audit.text and "key.mint" in audit.text and "user:root" in audit.text


def test_a_key_login_session_cannot_manage_keys_in_the_browser(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    client.post("/api/session/login", json={"username": key_id, "password": secret})
    assert client.get("/account/keys").status_code == 403
