"""The account page: profile, password change (current password required, other sessions end),
active sessions with revoke. Forms carry CSRF tokens; errors stand beside their fields."""

from __future__ import annotations

import re

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, login, make_key, make_user
from tests.helpers.html import browser_login, field_error

NEW_PASSWORD = "a much better passphrase"


def test_account_page_shows_profile_sessions_keys_and_two_factor(client, services):
    alice = make_user(services, "alice", name="Alice L.", groups=["family"])
    make_key(services, alice, name="lightroom")
    browser_login(client, "alice")
    page = client.get("/account")
    assert page.status_code == 200
    for part in ('id="account-username">alice<', 'value="Alice L."', "family", "lightroom", 'id="totp-section"',
                 "(this browser)", 'autocomplete="current-password"', 'autocomplete="new-password"'):
        assert part in page.text, part


def test_password_change_needs_the_current_password(client, services):
    make_user(services, "alice")
    browser_login(client, "alice")
    token = csrf_token(client.get("/account").text)
    wrong = client.post("/account/password", data={"csrf_token": token, "current_password": "not it",
                                                    "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert wrong.status_code == 400
    assert field_error(wrong.text, "current_password") == "This is not your current password."
    mismatch = client.post("/account/password", data={"csrf_token": token, "current_password": DEFAULT_PASSWORD,
                                                       "new_password": NEW_PASSWORD, "confirm_password": "other"})
    assert mismatch.status_code == 400 and "differ" in field_error(mismatch.text, "confirm_password")
    short = client.post("/account/password", data={"csrf_token": token, "current_password": DEFAULT_PASSWORD,
                                                    "new_password": "short", "confirm_password": "short"})
    assert short.status_code == 400 and "8 to 1024" in field_error(short.text, "new_password")
    assert login(client.application.test_client(), "alice").status_code == 200


def test_password_change_ends_every_other_session_but_this_one(client, services, app):
    make_user(services, "alice")
    other = app.test_client()
    login(other, "alice")
    browser_login(client, "alice")
    assert other.get("/api/me").status_code == 200
    token = csrf_token(client.get("/account").text)
    response = client.post("/account/password", data={"csrf_token": token, "current_password": DEFAULT_PASSWORD,
                                                       "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 303
    page = client.get("/account")
    assert page.status_code == 200 and "Signed out 1 other session." in page.text
    assert other.get("/api/me").status_code == 401
    fresh = app.test_client()
    assert login(fresh, "alice").status_code == 401
    assert login(fresh, "alice", NEW_PASSWORD).status_code == 200


def test_wrong_current_passwords_are_throttled(client, services):
    make_user(services, "alice")
    browser_login(client, "alice")
    token = csrf_token(client.get("/account").text)
    statuses = [client.post("/account/password", data={
        "csrf_token": token, "current_password": f"guess {n}", "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD}).status_code for n in range(12)]
    assert statuses[0] == 400 and statuses[-1] == 429


def test_profile_update_changes_name_and_email(client, services):
    make_user(services, "alice", email="alice@photos.example")
    browser_login(client, "alice")
    token = csrf_token(client.get("/account").text)
    bad = client.post("/account/profile", data={"csrf_token": token, "name": "Alice", "email": "not-an-address"})
    assert bad.status_code == 400 and "email address" in field_error(bad.text, "email")
    # ASVS 7.5.1: a new email address needs the current password (a session alone is not enough).
    bare = client.post("/account/profile", data={"csrf_token": token, "name": "Alice", "email": "eve@evil.example"})
    assert bare.status_code == 400 and "current password" in field_error(bare.text, "email_current_password")
    wrong = client.post("/account/profile", data={"csrf_token": token, "name": "Alice", "email": "eve@evil.example",
                                                  "email_current_password": "not it"})
    assert wrong.status_code == 400
    assert field_error(wrong.text, "email_current_password") == "This is not your current password."
    assert services.accounts.find("alice").email == "alice@photos.example"
    renamed = client.post("/account/profile",
                          data={"csrf_token": token, "name": "Alice L", "email": "alice@photos.example"})
    assert renamed.status_code == 303  # the name alone needs no password
    good = client.post("/account/profile", data={"csrf_token": token, "name": "Alice Liddell",
                                                 "email": "alice@wonder.example",
                                                 "email_current_password": DEFAULT_PASSWORD})
    assert good.status_code == 303
    alice = services.accounts.find("alice")
    assert (alice.name, alice.email, alice.email_verified) == ("Alice Liddell", "alice@wonder.example", False)


def test_user_signs_out_another_session_and_everywhere_else(client, services, app):
    make_user(services, "alice")
    phone, tablet = app.test_client(), app.test_client()
    phone_session = login(phone, "alice").json["session_id"]
    login(tablet, "alice")
    browser_login(client, "alice")
    page = client.get("/account")
    ids = re.findall(r'data-session-id="([^"]+)"', page.text)
    assert len(ids) == 3 and phone_session in ids
    token = csrf_token(page.text)
    assert client.post(f"/account/sessions/{phone_session}/revoke", data={"csrf_token": token}).status_code == 303
    assert phone.get("/api/me").status_code == 401 and tablet.get("/api/me").status_code == 200
    assert client.post("/account/sessions/unknown/revoke", data={"csrf_token": token}).status_code == 404
    assert client.post("/account/sessions/revoke-others", data={"csrf_token": token}).status_code == 303
    assert tablet.get("/api/me").status_code == 401
    assert client.get("/account").status_code == 200


def test_a_user_cannot_sign_out_someone_elses_session(client, services, app):
    make_user(services, "alice")
    make_user(services, "bob")
    bob = app.test_client()
    login(bob, "bob")
    [bobs] = services.sessions.active_for(services.accounts.find("bob"))
    browser_login(client, "alice")
    token = csrf_token(client.get("/account").text)
    assert client.post(f"/account/sessions/{bobs.id}/revoke", data={"csrf_token": token}).status_code == 404
    assert bob.get("/api/me").status_code == 200


def test_signing_out_this_session_from_the_list_logs_out(client, services):
    make_user(services, "alice")
    browser_login(client, "alice")
    page = client.get("/account")
    [mine] = re.findall(r'data-session-id="([^"]+)"', page.text)
    response = client.post(f"/account/sessions/{mine}/revoke", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    assert client.get("/account").status_code == 302


def test_account_forms_need_their_csrf_token(client, services):
    make_user(services, "alice")
    browser_login(client, "alice")
    assert client.post("/account/password", data={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD,
                                                   "confirm_password": NEW_PASSWORD}).status_code == 400
    assert client.post("/account/sessions/revoke-others").status_code == 400
    assert login(client.application.test_client(), "alice").status_code == 200


def test_a_key_session_cannot_change_the_password(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["photos:read"])
    assert client.post("/api/session/login", json={"username": key_id, "password": secret}).status_code == 200
    assert client.get("/account").status_code == 200
    response = client.post("/account/password", data={"current_password": DEFAULT_PASSWORD})
    assert response.status_code == 403


def test_the_user_fills_in_standard_profile_claims_and_bad_ones_stand_beside_their_field(client, services):
    make_user(services, "alice", email="alice@photos.example")
    browser_login(client, "alice")
    page = client.get("/account")
    assert 'id="given_name"' in page.text and 'id="zoneinfo"' in page.text
    token = csrf_token(page.text)
    base = {"csrf_token": token, "name": "Alice", "email": "alice@photos.example"}
    bad = client.post("/account/profile", data={**base, "picture": "javascript:alert(document.cookie)"})
    assert bad.status_code == 400 and "https://" in field_error(bad.text, "picture")
    assert not services.accounts.find("alice").profile
    good = client.post("/account/profile", data={**base, "given_name": "Alice", "family_name": "Liddell",
                                                 "locale": "fr-CA", "zoneinfo": "America/Toronto"})
    assert good.status_code == 303
    assert services.accounts.find("alice").profile == {"given_name": "Alice", "family_name": "Liddell",
                                                       "locale": "fr-CA", "zoneinfo": "America/Toronto"}
    shown = client.get("/account").text
    assert 'value="Liddell"' in shown and 'value="America/Toronto"' in shown
