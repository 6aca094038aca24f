"""The HTML two-factor section of the account page: set up, recovery codes, turn off."""

import re

import pytest

from authserver.cookies import SESSION_COOKIE
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import Authenticator, enrol_totp, login, make_user


@pytest.fixture
def alice(client, services):
    user = make_user(services, "alice")
    login(client, "alice")
    return user


def recovery_codes(html: str) -> list[str]:
    return re.findall(r"<li>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</li>", html)


def test_set_up_from_the_account_page(client, services, clock, alice):
    account = client.get("/account").text
    assert 'id="totp-section"' in account and 'href="/account/totp"' in account

    page = client.get("/account/totp")
    assert page.status_code == 200 and "<svg" not in page.text
    started = client.post("/account/totp/start", data={"csrf_token": csrf_token(page.text)})
    assert started.status_code == 303 and started.headers["Location"] == "/account/totp"

    page = client.get("/account/totp").text
    assert "<svg" in page and "otpauth://totp/localhost:alice?secret=" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    done = client.post("/account/totp/confirm", data={"code": Authenticator(secret, clock).code(),
                                                      "csrf_token": csrf_token(page)})
    assert done.status_code == 200 and len(recovery_codes(done.text)) == 10
    assert services.totp.is_enrolled(alice)
    assert "Recovery codes left: <strong>10</strong>" in client.get("/account").text
    assert recovery_codes(client.get("/account/totp").text) == []  # shown once only


def test_wrong_confirmation_code_keeps_it_pending(client, services, clock, alice):
    services.totp.begin_enrolment(alice, actor="test")
    page = client.get("/account/totp").text
    response = client.post("/account/totp/confirm", data={"code": "12345", "csrf_token": csrf_token(page)})
    assert response.status_code == 400 and "not correct" in response.text
    assert not services.totp.is_enrolled(alice)


def test_regenerate_and_turn_off(client, services, clock, alice):
    device, old = enrol_totp(services, alice)
    token = csrf_token(client.get("/account/totp").text)
    regenerated = client.post("/account/totp/recovery-codes", data={"code": device.code(), "csrf_token": token})
    new = recovery_codes(regenerated.text)
    assert len(new) == 10 and not set(new) & set(old)
    clock.advance(seconds=30)
    off = client.post("/account/totp/disable", data={"code": new[0], "csrf_token": token})
    assert off.status_code == 303
    assert not services.totp.is_enrolled(alice)


@pytest.mark.parametrize("path", ["/account/totp/start", "/account/totp/confirm", "/account/totp/disable"])
def test_account_forms_need_their_csrf_token(client, alice, path):
    assert client.post(path, data={"code": "123456"}).status_code == 400


def test_account_pages_need_a_login(client):
    assert client.get("/account/totp").headers["Location"] == "/login?next=/account/totp"
    assert client.post("/account/totp/start").headers["Location"].startswith("/login")


def test_a_session_opened_with_an_api_key_cannot_manage_totp(client, services):
    user = make_user(services, "alice")
    opened = services.sessions.open(user, auth_method="api_key", amr=[], key_id="pkid-20260101-x", scopes=["photos"])
    client.set_cookie(SESSION_COOKIE, opened.cookie_value)
    response = client.post("/api/me/totp", json={})
    assert response.status_code == 403
    page = client.get("/account/totp")  # the one page guard: a key's session is refused, with the reason
    assert page.status_code == 403 and b"needs a password login" in page.data
