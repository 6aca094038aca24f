"""Passkeys over HTTP: the account page, the second step of a browser login, passwordless sign-in,
the JSON login for apps, and the attacks on each (CSRF, another browser's challenge, a bent answer)."""

import html
import json
import re

import pytest
from sqlalchemy import select

from authserver.audit.models import AuditEvent
from authserver.cookies import PASSKEY_LOGIN_COOKIE
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, login, make_user
from tests.helpers.webauthn import SoftAuthenticator

OPTIONS = re.compile(r'<form[^>]*id="(passkey-[a-z]+)"[^>]*data-options="([^"]+)"')


def options_on(page: str, form_id: str) -> dict:
    found = {name: value for name, value in OPTIONS.findall(page)}
    assert form_id in found, f"the page has the {form_id} form with its options"
    return json.loads(html.unescape(found[form_id]))


def add_passkey(client, device, *, password=DEFAULT_PASSWORD, name="Phone"):
    page = client.get("/account").text
    answer = device.create(options_on(page, "passkey-register"))
    return client.post("/account/passkeys", data={"csrf_token": csrf_token(page), "name": name,
                                                  "current_password": password, "credential": answer})


def user_with_passkey(client, services, username="alice"):
    make_user(services, username)
    login(client, username)
    device = SoftAuthenticator()
    assert add_passkey(client, device).status_code == 303
    client.post("/api/session/logout", json={})
    return device


def password_step(client, username="alice", next_url="/account"):
    page = client.get("/login", query_string={"next": next_url})
    return client.post("/login", data={"username": username, "password": DEFAULT_PASSWORD,
                                       "csrf_token": csrf_token(page.text), "next": next_url})


# -- the account page ----------------------------------------------------------------


def test_account_page_lists_passkeys_and_offers_a_new_one_with_its_script(client, services):
    make_user(services, "alice")
    login(client, "alice")
    page = client.get("/account")
    assert 'id="passkeys"' in page.text and "No passkeys yet." in page.text
    assert '<script src="/static/passkeys.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    options = options_on(page.text, "passkey-register")
    assert options["rp"]["id"] == "localhost" and options["user"]["name"] == "alice"
    assert client.get("/static/passkeys.js").status_code == 200

    assert add_passkey(client, SoftAuthenticator(), name="Laptop").status_code == 303
    page = client.get("/account").text
    assert "Laptop" in page and "never" in page


def test_adding_a_passkey_needs_the_current_password(client, services, db):
    make_user(services, "alice")
    login(client, "alice")
    response = add_passkey(client, SoftAuthenticator(), password="wrong password")
    assert response.status_code == 400 and "This is not your current password." in response.text
    assert services.passkeys.count_for(services.accounts.find("alice")) == 0


def test_adding_a_passkey_without_csrf_is_refused(client, services):
    make_user(services, "alice")
    login(client, "alice")
    page = client.get("/account").text
    answer = SoftAuthenticator().create(options_on(page, "passkey-register"))
    response = client.post("/account/passkeys", data={"name": "x", "current_password": DEFAULT_PASSWORD,
                                                      "credential": answer})
    assert response.status_code == 400
    assert services.passkeys.count_for(services.accounts.find("alice")) == 0


def test_a_registration_from_another_origin_is_refused_with_a_clear_message(client, services):
    make_user(services, "alice")
    login(client, "alice")
    page = client.get("/account").text
    answer = SoftAuthenticator().create(options_on(page, "passkey-register"), origin="https://evil.example")
    response = client.post("/account/passkeys", data={"csrf_token": csrf_token(page), "name": "x",
                                                      "current_password": DEFAULT_PASSWORD, "credential": answer})
    assert response.status_code == 400
    assert "another site (https://evil.example)" in html.unescape(response.text)


def test_a_registration_without_an_answer_says_it_needs_javascript(client, services):
    make_user(services, "alice")
    login(client, "alice")
    page = client.get("/account").text
    response = client.post("/account/passkeys", data={"csrf_token": csrf_token(page), "name": "x",
                                                      "current_password": DEFAULT_PASSWORD})
    assert response.status_code == 400 and "needs JavaScript" in response.text


def test_a_registration_challenge_of_another_session_is_refused(app, services):
    make_user(services, "alice")
    first, second = app.test_client(), app.test_client()
    login(first, "alice")
    login(second, "alice")
    page_first = first.get("/account").text
    page_second = second.get("/account").text
    answer = SoftAuthenticator().create(options_on(page_first, "passkey-register"))
    response = second.post("/account/passkeys", data={"csrf_token": csrf_token(page_second), "name": "x",
                                                      "current_password": DEFAULT_PASSWORD, "credential": answer})
    assert response.status_code == 400
    assert services.passkeys.count_for(services.accounts.find("alice")) == 0


def test_removing_a_passkey_needs_the_current_password_and_is_audited(client, services, db):
    user_with_passkey(client, services)
    user = services.accounts.find("alice")
    passkey = services.passkeys.list_for(user)[0]
    login(client, "alice")
    # The account with a passkey now logs in with it; a session made directly keeps the test short.
    opened = services.sessions.open(user, auth_method="password+passkey", amr=["pwd", "hwk", "mfa"])
    client.set_cookie("authserver_session", opened.cookie_value)
    page = client.get("/account").text
    wrong = client.post(f"/account/passkeys/{passkey.id}/remove",
                        data={"csrf_token": csrf_token(page), "current_password": "nope nope"})
    assert wrong.status_code == 400 and services.passkeys.count_for(user) == 1
    done = client.post(f"/account/passkeys/{passkey.id}/remove",
                       data={"csrf_token": csrf_token(page), "current_password": DEFAULT_PASSWORD})
    assert done.status_code == 303 and services.passkeys.count_for(user) == 0
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "passkey.remove")) is not None


# -- the second step of a browser login -----------------------------------------------


def test_password_then_passkey_logs_in_with_hwk_in_amr(client, services):
    device = user_with_passkey(client, services)
    first = password_step(client)
    assert first.status_code == 303 and first.headers["Location"] == "/login/totp"
    page = client.get("/login/totp").text
    assert 'name="code"' not in page  # no TOTP enrolled: only the passkey is offered
    options = options_on(page, "passkey-second")
    assert options["userVerification"] == "preferred" and len(options["allowCredentials"]) == 1
    done = client.post("/login/totp", data={"csrf_token": csrf_token(page), "credential": device.get(options)})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    me = client.get("/api/me").json
    assert me["auth_method"] == "password+passkey" and me["amr"] == ["pwd", "hwk", "user", "mfa"]


def test_a_user_with_totp_and_a_passkey_is_offered_both(client, services):
    device = user_with_passkey(client, services)
    totp_device, _ = enrol_totp(services, services.accounts.find("alice"))
    password_step(client)
    page = client.get("/login/totp").text
    assert 'name="code"' in page and 'name="recovery_code"' in page and "passkey-second" in page
    done = client.post("/login/totp", data={"csrf_token": csrf_token(page), "code": totp_device.code()})
    assert done.status_code == 303
    assert client.get("/api/me").json["amr"] == ["pwd", "otp", "mfa"]
    assert device  # the passkey stays


@pytest.mark.parametrize("bend", [{"origin": "http://evil.example"}, {"rp_id": "evil.example"},
                                  {"challenge": "A" * 43}])
def test_a_bent_passkey_answer_at_the_second_step_is_refused(client, services, bend):
    device = user_with_passkey(client, services)
    password_step(client)
    page = client.get("/login/totp").text
    answer = device.get(options_on(page, "passkey-second"), **bend)
    response = client.post("/login/totp", data={"csrf_token": csrf_token(page), "credential": answer})
    assert response.status_code == 401 and 'role="alert"' in response.text
    assert client.get("/api/me").status_code == 401


def test_the_second_step_without_csrf_is_refused(client, services):
    device = user_with_passkey(client, services)
    password_step(client)
    page = client.get("/login/totp").text
    response = client.post("/login/totp", data={"credential": device.get(options_on(page, "passkey-second"))})
    assert response.status_code == 400 and client.get("/api/me").status_code == 401


def test_a_passkey_counts_as_the_second_factor_the_policy_requires(client, services):
    user_with_passkey(client, services)
    services.totp.required = "all"
    first = password_step(client)
    assert first.headers["Location"] == "/login/totp"  # not sent to set TOTP up


def test_an_app_asking_for_two_factors_gets_the_passkey_step(client, services):
    user_with_passkey(client, services)
    first = password_step(client, next_url="/oauth/authorize?client_id=x&acr_values=2")
    assert first.headers["Location"] == "/login/totp"


# -- passwordless -----------------------------------------------------------------------


def passwordless_page(client, next_url="/account"):
    login_page = client.get("/login", query_string={"next": next_url}).text
    assert 'id="passkey-start"' in login_page and "Sign in with a passkey" in login_page
    return client.post("/login/passkey", data={"csrf_token": csrf_token(login_page), "next": next_url})


def test_passwordless_sign_in_satisfies_both_factors(client, services):
    device = user_with_passkey(client, services)
    page = passwordless_page(client)
    assert page.status_code == 200 and client.get_cookie(PASSKEY_LOGIN_COOKIE) is not None
    options = options_on(page.text, "passkey-login")
    assert options["userVerification"] == "required"
    done = client.post("/login/passkey", data={"csrf_token": csrf_token(page.text), "next": "/account",
                                               "credential": device.get(options)})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    me = client.get("/api/me").json
    assert me["auth_method"] == "passkey" and me["amr"] == ["hwk", "user", "mfa"]
    assert client.get_cookie(PASSKEY_LOGIN_COOKIE) is None


def test_passwordless_without_user_verification_is_refused_with_a_clear_message(client, services):
    device = user_with_passkey(client, services)
    page = passwordless_page(client)
    answer = device.get(options_on(page.text, "passkey-login"), uv=False)
    response = client.post("/login/passkey", data={"csrf_token": csrf_token(page.text), "credential": answer})
    assert response.status_code == 400 and "verify you" in response.text
    assert client.get("/api/me").status_code == 401


def test_passwordless_answer_from_another_browser_is_refused(app, services):
    victim, attacker = app.test_client(), app.test_client()
    device = user_with_passkey(victim, services)
    page = passwordless_page(victim)
    answer = device.get(options_on(page.text, "passkey-login"))
    attacker_page = passwordless_page(attacker)  # the attacker has a challenge of its own
    response = attacker.post("/login/passkey", data={"csrf_token": csrf_token(attacker_page.text),
                                                     "credential": answer})
    assert response.status_code == 400 and attacker.get("/api/me").status_code == 401


def test_passwordless_without_its_cookie_is_refused(client, services):
    device = user_with_passkey(client, services)
    page = passwordless_page(client)
    answer = device.get(options_on(page.text, "passkey-login"))
    client.delete_cookie(PASSKEY_LOGIN_COOKIE)
    response = client.post("/login/passkey", data={"csrf_token": csrf_token(page.text), "credential": answer})
    assert response.status_code == 400 and "expired or was already used" in response.text


def test_passwordless_challenges_are_throttled_per_address(client, services):
    make_user(services, "alice")
    statuses = {passwordless_page(client).status_code for _ in range(35)}
    assert 429 in statuses


def test_passwordless_next_stays_on_this_site(client, services):
    device = user_with_passkey(client, services)
    page = passwordless_page(client, next_url="https://evil.example/")
    options = options_on(page.text, "passkey-login")
    done = client.post("/login/passkey", data={"csrf_token": csrf_token(page.text), "next": "https://evil.example/",
                                               "credential": device.get(options)})
    assert done.status_code == 303 and done.headers["Location"] == "/account"


# -- the JSON login for apps ------------------------------------------------------------


def test_json_login_of_a_totp_only_user_is_unchanged(client, services):
    enrol_totp(services, make_user(services, "bob"))
    response = login(client, "bob")
    assert response.status_code == 401
    assert response.json == {"error": "totp_required", "error_description":
                             "Enter the code from your authenticator app (totp_code) or a recovery code."}


def test_json_login_with_a_passkey_offers_the_methods_and_options(client, services):
    device = user_with_passkey(client, services)
    enrol_totp(services, services.accounts.find("alice"))
    response = login(client, "alice")
    assert response.status_code == 401 and response.json["error"] == "second_factor_required"
    assert response.json["methods"] == ["webauthn", "totp"]
    options = response.json["webauthn"]
    assert options["rpId"] == "localhost" and options["allowCredentials"]
    done = client.post("/api/session/login", json={
        "username": "alice", "password": DEFAULT_PASSWORD, "pending_login": response.json["pending_login"],
        "webauthn": json.loads(device.get(options))})
    assert done.status_code == 200, done.json
    assert done.json["auth_method"] == "password+passkey" and "hwk" in done.json["amr"]


def test_json_passkey_answer_needs_its_pending_login(client, services):
    device = user_with_passkey(client, services)
    first = login(client, "alice").json
    answer = json.loads(device.get(first["webauthn"]))
    for pending in (None, "made-up", "x" * 200):
        body = {"username": "alice", "password": DEFAULT_PASSWORD, "webauthn": answer}
        if pending:
            body["pending_login"] = pending
        response = client.post("/api/session/login", json=body)
        assert response.status_code in (400, 401) and response.json["error"] != "internal_error"
    assert client.get("/api/me").status_code == 401


def test_json_passkey_pending_login_of_another_user_is_refused(client, services):
    device = user_with_passkey(client, services)
    user_with_passkey(client, services, "bob")
    alices = login(client, "alice").json
    bobs = login(client, "bob").json
    response = client.post("/api/session/login", json={
        "username": "alice", "password": DEFAULT_PASSWORD, "pending_login": bobs["pending_login"],
        "webauthn": json.loads(device.get(alices["webauthn"]))})
    assert response.status_code == 401 and client.get("/api/me").status_code == 401


def test_json_passkey_answer_is_single_use(client, services):
    device = user_with_passkey(client, services)
    first = login(client, "alice").json
    body = {"username": "alice", "password": DEFAULT_PASSWORD, "pending_login": first["pending_login"],
            "webauthn": json.loads(device.get(first["webauthn"]))}
    assert client.post("/api/session/login", json=body).status_code == 200
    client.post("/api/session/logout", json={})
    again = client.post("/api/session/login", json=body)
    assert again.status_code == 401


@pytest.mark.parametrize("webauthn", ["a string", 5, [1], {"response": "x"}, {}])
def test_json_malformed_passkey_answers_are_4xx(client, services, webauthn):
    user_with_passkey(client, services)
    first = login(client, "alice").json
    response = client.post("/api/session/login", json={
        "username": "alice", "password": DEFAULT_PASSWORD, "pending_login": first["pending_login"],
        "webauthn": webauthn})
    assert 400 <= response.status_code < 500


def test_json_user_with_a_passkey_and_totp_may_still_send_a_code(client, services):
    user_with_passkey(client, services)
    totp_device, _ = enrol_totp(services, services.accounts.find("alice"))
    response = client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD,
                                                        "totp_code": totp_device.code()})
    assert response.status_code == 200 and response.json["auth_method"] == "password+totp"


def test_the_last_passkey_stays_when_policy_requires_a_second_factor(client, services):
    user_with_passkey(client, services)
    user = services.accounts.find("alice")
    services.totp.required = "all"
    opened = services.sessions.open(user, auth_method="password+passkey", amr=["pwd", "hwk", "mfa"])
    client.set_cookie("authserver_session", opened.cookie_value)
    page = client.get("/account").text
    passkey = services.passkeys.list_for(user)[0]
    refused = client.post(f"/account/passkeys/{passkey.id}/remove",
                          data={"csrf_token": csrf_token(page), "current_password": DEFAULT_PASSWORD})
    assert refused.status_code == 403 and "before removing the last one" in html.unescape(refused.text)
    assert services.passkeys.count_for(user) == 1
    enrol_totp(services, user)  # with TOTP as well, it may go
    done = client.post(f"/account/passkeys/{passkey.id}/remove",
                       data={"csrf_token": csrf_token(page), "current_password": DEFAULT_PASSWORD})
    assert done.status_code == 303 and services.passkeys.count_for(user) == 0


def test_a_json_pending_login_cannot_be_finished_in_the_browser(client, services):
    user_with_passkey(client, services)
    pending = login(client, "alice").json["pending_login"]
    client.set_cookie("authserver_login", pending)
    for path in ("/login/totp", "/login/totp/setup"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_removing_someone_elses_passkey_is_404(app, services):
    bob_client = app.test_client()
    user_with_passkey(bob_client, services, "bob")
    bobs = services.passkeys.list_for(services.accounts.find("bob"))[0]
    eve = app.test_client()
    make_user(services, "eve")
    login(eve, "eve")
    page = eve.get("/account").text
    response = eve.post(f"/account/passkeys/{bobs.id}/remove",
                        data={"csrf_token": csrf_token(page), "current_password": DEFAULT_PASSWORD})
    assert response.status_code == 404 and services.passkeys.count_for(services.accounts.find("bob")) == 1


def test_api_me_of_a_passkey_session_matches_the_openapi_description(client, services):
    from authserver.openapi import SCHEMAS

    device = user_with_passkey(client, services)
    page = passwordless_page(client)
    client.post("/login/passkey", data={"csrf_token": csrf_token(page.text),
                                        "credential": device.get(options_on(page.text, "passkey-login"))})
    identity = client.get("/api/me").json
    assert identity["auth_method"] in SCHEMAS["Identity"]["properties"]["auth_method"]["enum"]
