"""Admin console, users: search, create (password generated and shown once), edit, disable,
reset password and TOTP; destructive actions need their box ticked; every action is audited."""

from __future__ import annotations

import re

from sqlalchemy import select

from authserver.audit.models import AuditEvent
from authserver.oidc.claims import user_claims
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import enrol_totp, login, make_user
from tests.helpers.html import browser_login, field_error, shown_value


def admin_client(client, services):
    make_user(services, "root", admin=True)
    assert browser_login(client, "root").status_code == 303
    return client


def events(action: str) -> list[AuditEvent]:
    from authserver.extensions import db

    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def user_page(client, user):
    page = client.get(f"/admin/users/{user.id}")
    assert page.status_code == 200
    return page


def test_admin_creates_a_user_with_a_generated_password_shown_once(client, services, app):
    admin_client(client, services)
    page = client.get("/admin/users")
    response = client.post("/admin/users", data={
        "csrf_token": csrf_token(page.text), "username": "dora", "name": "Dora", "email": "dora@photos.example",
        "groups": "family, photos family", "password": "",
    })
    assert response.status_code == 201
    password = shown_value(response.text, "generated-password")
    assert password and len(password) >= 20
    dora = services.accounts.find("dora")
    assert dora.groups == ["family", "photos"] and not dora.is_admin
    assert password not in client.get(f"/admin/users/{dora.id}").text
    with app.test_client() as other:
        assert login(other, "dora", password).status_code == 200
    [event] = [e for e in events("user.create") if e.target == "user:dora"]
    assert event.actor == "user:root" and password not in str(event.details)


def test_create_form_errors_stand_beside_their_fields(client, services):
    admin_client(client, services)
    make_user(services, "dora")
    page = client.get("/admin/users")
    taken = client.post("/admin/users", data={"csrf_token": csrf_token(page.text), "username": "DORA", "email": ""})
    assert taken.status_code == 409
    assert "taken" in field_error(taken.text, "username")
    bad = client.post("/admin/users", data={"csrf_token": csrf_token(page.text), "username": "eve", "email": "nope",
                                            "password": "short", "groups": "a b!"})
    assert bad.status_code == 400
    assert "email" in field_error(bad.text, "email")
    assert "8 to 1024" in field_error(bad.text, "password")
    assert services.accounts.find("eve") is None


def test_forms_without_a_csrf_token_are_refused(client, services):
    admin_client(client, services)
    dora = make_user(services, "dora")
    assert client.post("/admin/users", data={"username": "eve"}).status_code == 400
    assert client.post(f"/admin/users/{dora.id}/disable", data={"confirm": "y"}).status_code == 400
    assert client.post(f"/admin/users/{dora.id}", data={"is_admin": "y"}).status_code == 400
    assert not services.accounts.find("dora").is_disabled and services.accounts.find("eve") is None


def test_search_matches_username_name_and_email_literally(client, services):
    admin_client(client, services)
    make_user(services, "alice", name="Alice Liddell")
    make_user(services, "bob", email="bob@zoo.example")
    make_user(services, "under_score")

    def listed(query):
        return set(re.findall(r'data-username="([^"]+)"', client.get("/admin/users", query_string={"q": query}).text))

    assert listed("LIDDELL") == {"alice"}
    assert listed("zoo.example") == {"bob"}
    assert listed("_") == {"under_score"}  # a LIKE wildcard typed by the admin matches only itself
    assert listed("") == {"root", "alice", "bob", "under_score"}


def test_disabling_needs_the_box_ticked_and_signs_the_user_out(client, services, app):
    admin_client(client, services)
    dora = make_user(services, "dora")
    with app.test_client() as dora_browser:
        browser_login(dora_browser, "dora")
        assert dora_browser.get("/account").status_code == 200
        token = csrf_token(user_page(client, dora).text)
        unconfirmed = client.post(f"/admin/users/{dora.id}/disable", data={"csrf_token": token})
        assert unconfirmed.status_code == 400 and "Tick the box" in field_error(unconfirmed.text, "confirm-disable")
        assert not services.accounts.find("dora").is_disabled
        done = client.post(f"/admin/users/{dora.id}/disable", data={"csrf_token": token, "confirm": "y"})
        assert done.status_code == 303
        assert services.accounts.find("dora").is_disabled
        assert dora_browser.get("/account").status_code == 302
        assert login(dora_browser, "dora").status_code == 401
    assert [e.actor for e in events("user.disable")] == ["user:root"]
    assert client.post(f"/admin/users/{dora.id}/enable", data={"csrf_token": token}).status_code == 303
    assert not services.accounts.find("dora").is_disabled and events("user.enable")


def test_an_admin_cannot_lock_themself_out(client, services):
    admin_client(client, services)
    root = services.accounts.find("root")
    token = csrf_token(user_page(client, root).text)
    disable = client.post(f"/admin/users/{root.id}/disable", data={"csrf_token": token, "confirm": "y"})
    assert disable.status_code == 400 and "your own account" in field_error(disable.text, "confirm-disable")
    demote = client.post(f"/admin/users/{root.id}", data={"csrf_token": token, "name": "Root", "email": ""})
    assert demote.status_code == 400 and "own admin flag" in field_error(demote.text, "is_admin")
    root = services.accounts.find("root")
    assert root.is_admin and not root.is_disabled


def test_admin_edits_groups_and_the_admin_flag(client, services):
    admin_client(client, services)
    dora = make_user(services, "dora", email="dora@photos.example")
    token = csrf_token(user_page(client, dora).text)
    response = client.post(f"/admin/users/{dora.id}", data={
        "csrf_token": token, "name": "Dora E.", "email": "dora@photos.example", "groups": "editors", "is_admin": "y",
    })
    assert response.status_code == 303
    dora = services.accounts.find("dora")
    assert dora.is_admin and dora.groups == ["editors"] and dora.name == "Dora E."
    [event] = events("user.update")
    assert event.details["admin"] is True and sorted(event.details["fields"]) == ["groups", "is_admin", "name"]


def test_password_reset_shows_a_new_password_once_and_ends_sessions(client, services, app):
    admin_client(client, services)
    dora = make_user(services, "dora")
    with app.test_client() as dora_browser:
        browser_login(dora_browser, "dora")
        token = csrf_token(user_page(client, dora).text)
        response = client.post(f"/admin/users/{dora.id}/reset-password", data={"csrf_token": token, "confirm": "y"})
        assert response.status_code == 200
        password = shown_value(response.text, "generated-password")
        assert password
        assert dora_browser.get("/account").status_code == 302
        assert login(dora_browser, "dora").status_code == 401
        assert login(dora_browser, "dora", password).status_code == 200
    assert [e.actor for e in events("user.password_reset")] == ["user:root"]


def test_totp_reset_removes_the_second_factor(client, services):
    admin_client(client, services)
    dora = make_user(services, "dora")
    enrol_totp(services, dora)
    page = user_page(client, dora)
    assert 'id="user-totp">on' in page.text
    response = client.post(f"/admin/users/{dora.id}/reset-totp",
                           data={"csrf_token": csrf_token(page.text), "confirm": "y"})
    assert response.status_code == 303
    assert not services.totp.is_enrolled(services.accounts.find("dora"))
    assert [e.actor for e in events("totp.reset")] == ["user:root"]


def test_unknown_users_and_actions_are_404(client, services):
    admin_client(client, services)
    token = csrf_token(client.get("/admin/users").text)
    assert client.get("/admin/users/999999").status_code == 404
    assert client.post("/admin/users/999999/disable", data={"csrf_token": token, "confirm": "y"}).status_code == 404
    root = services.accounts.find("root")
    assert client.post(f"/admin/users/{root.id}/explode", data={"csrf_token": token}).status_code == 404


def test_admin_marks_an_address_verified_and_a_new_address_starts_unverified(client, services):
    # email_verified was always false and nothing could set it (relying parties such as Immich
    # match accounts by a verified address).
    admin_client(client, services)
    dora = make_user(services, "dora", email="dora@photos.example")
    def save(**fields):
        token = csrf_token(user_page(client, dora).text)
        data = {"csrf_token": token, "name": "Dora", "email": "dora@photos.example", "groups": "", **fields}
        assert client.post(f"/admin/users/{dora.id}", data=data).status_code == 303
        return services.accounts.find("dora").email_verified

    assert save(email_verified="y") is True
    [event] = events("user.update")
    assert event.details["email_verified"] is True
    assert user_claims(services.accounts.find("dora"), "openid email")["email_verified"] is True
    # A new address, the box left ticked from the old one: unverified until ticked for it.
    assert save(email="dora@elsewhere.example", email_verified="y") is False
    assert save(email="dora@elsewhere.example", email_verified="y") is True
    assert save(email="dora@elsewhere.example") is False  # unticked


def test_admin_edits_the_standard_profile_claims(client, services):
    admin_client(client, services)
    dora = make_user(services, "dora", email="dora@photos.example")
    token = csrf_token(user_page(client, dora).text)
    base = {"csrf_token": token, "name": "Dora", "email": "dora@photos.example", "groups": ""}
    refused = client.post(f"/admin/users/{dora.id}", data={**base, "zoneinfo": "Mars/Olympus"})
    assert refused.status_code == 400 and "time zone" in field_error(refused.text, "zoneinfo")
    done = client.post(f"/admin/users/{dora.id}", data={**base, "nickname": "Dee", "website": "https://dora.example"})
    assert done.status_code == 303
    assert services.accounts.find("dora").profile == {"nickname": "Dee", "website": "https://dora.example"}
    [event] = events("user.update")
    assert event.details["fields"] == ["profile"]
