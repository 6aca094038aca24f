"""Without AUTHSERVER_SMTP_URL mail is off: the pages that would mail say so, never a 500, and
everything else (password changes, keys, TOTP) works as before."""

from __future__ import annotations

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import enrol_totp, make_key, make_user
from tests.helpers.html import browser_login, field_error


def test_forgot_password_says_mail_is_off(client, services):
    make_user(services, "alice")
    login_page = client.get("/login")
    assert 'href="/password/forgot"' in login_page.text
    page = client.get("/password/forgot")
    assert page.status_code == 200 and 'id="mail-off"' in page.text and "administrator" in page.text
    posted = client.post("/password/forgot", data={"csrf_token": csrf_token(login_page.text),
                                                   "email": "alice@photos.example"})
    assert posted.status_code == 400 and 'id="mail-off"' in posted.text


def test_account_page_offers_no_verification_and_the_endpoint_says_why(client, services):
    make_user(services, "alice")
    browser_login(client, "alice")
    page = client.get("/account")
    assert "not verified" in page.text and "Send a verification link" not in page.text
    refused = client.post("/account/email/verify", data={"csrf_token": csrf_token(page.text)})
    assert refused.status_code == 404 and "does not send mail" in refused.text


def test_admin_cannot_invite_without_mail(client, services):
    make_user(services, "root", admin=True)
    browser_login(client, "root")
    page = client.get("/admin/users")
    assert 'id="invite-off"' in page.text
    refused = client.post("/admin/users", data={"csrf_token": csrf_token(page.text), "username": "carol",
                                                "email": "carol@photos.example", "invite": "y"})
    assert refused.status_code == 400 and "does not send mail" in field_error(refused.text, "invite")
    assert services.accounts.find("carol") is None


def test_everything_else_works_without_mail(client, services):
    user = make_user(services, "alice")
    services.accounts.set_password(user, "another passphrase", actor="test")
    make_key(services, user)
    enrol_totp(services, user)
    services.accounts.update_profile(user, name="Alice", email="alice@new.example", actor="test")
    assert services.mail.outbox is None


def test_stale_links_are_a_400(client, services):
    assert client.get("/password/reset/" + "A" * 43).status_code == 400
    assert client.get("/invite/" + "A" * 43).status_code == 400
    assert client.get("/email/verify/" + "A" * 43).status_code == 400
