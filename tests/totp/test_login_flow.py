"""Password + TOTP logins: the browser form sequence, the JSON login, policy-driven enrolment."""

import re

import pytest
from sqlalchemy import text

from authserver.audit.models import AuditEvent
from authserver.cookies import PENDING_LOGIN_COOKIE, SESSION_COOKIE
from authserver.crypto import token_hash
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, Authenticator, enrol_totp, login, make_user


def password_step(client, username, next_url="/account"):
    page = client.get("/login", query_string={"next": next_url})
    return client.post("/login", data={"username": username, "password": DEFAULT_PASSWORD,
                                       "csrf_token": csrf_token(page.text), "next": next_url})


def wrong_code(device) -> str:
    return next(c for c in ("000000", "111111", "222222") if c not in {device.code(s) for s in (-1, 0, 1)})


def session_cookie(client):
    return client.get_cookie(SESSION_COOKIE)


# -- browser ------------------------------------------------------------------


def test_browser_login_password_then_totp_then_next(client, services):
    user = make_user(services, "alice")
    device, _ = enrol_totp(services, user)
    next_url = "/oauth/authorize?client_id=gallery&state=xyz"

    first = password_step(client, "alice", next_url)
    assert first.status_code == 303 and first.headers["Location"] == "/login/totp"
    assert session_cookie(client) is None  # half logged in: no session yet
    assert client.get("/api/me").status_code == 401

    page = client.get("/login/totp")
    assert page.status_code == 200
    assert 'name="code"' in page.text and 'autocomplete="one-time-code"' in page.text
    assert 'name="recovery_code"' in page.text
    done = client.post("/login/totp", data={"code": device.code(), "csrf_token": csrf_token(page.text)})
    assert done.status_code == 303 and done.headers["Location"] == next_url
    me = client.get("/api/me").json
    assert me["auth_method"] == "password+totp" and me["amr"] == ["pwd", "otp", "mfa"]
    assert client.get_cookie(PENDING_LOGIN_COOKIE, path="/") is None


def test_browser_login_with_a_recovery_code(client, services):
    _, codes = enrol_totp(services, make_user(services, "alice"))
    password_step(client, "alice")
    page = client.get("/login/totp")
    done = client.post("/login/totp", data={"recovery_code": codes[0], "csrf_token": csrf_token(page.text)})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert client.get("/api/me").json["auth_method"] == "password+totp"
    assert services.totp.status(services.accounts.find("alice")).recovery_codes_left == 9


def test_wrong_code_shows_the_form_again_and_a_right_one_then_works(client, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    password_step(client, "alice")
    token = csrf_token(client.get("/login/totp").text)
    wrong = client.post("/login/totp", data={"code": wrong_code(device), "csrf_token": token})
    assert wrong.status_code == 401 and "not correct" in wrong.text
    assert session_cookie(client) is None
    right = client.post("/login/totp", data={"code": device.code(), "csrf_token": token})
    assert right.status_code == 303


def test_totp_form_without_csrf_token_is_refused(client, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    password_step(client, "alice")
    response = client.post("/login/totp", data={"code": device.code()})
    assert response.status_code == 400
    assert session_cookie(client) is None


def test_half_login_expires_after_five_minutes(client, services, clock):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    password_step(client, "alice")
    token = csrf_token(client.get("/login/totp").text)
    clock.advance(minutes=5, seconds=1)
    response = client.post("/login/totp", data={"code": device.code(), "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/api/me").status_code == 401


def test_half_login_is_spent_once_and_stored_only_hashed(client, services, db):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    password_step(client, "alice")
    handle = client.get_cookie(PENDING_LOGIN_COOKIE, path="/").value
    stored = db.session.execute(text("SELECT token_hash FROM pending_logins")).scalars().all()
    assert stored == [token_hash(handle)]
    token = csrf_token(client.get("/login/totp").text)
    assert client.post("/login/totp", data={"code": device.code(), "csrf_token": token}).status_code == 303

    other = client.application.test_client()
    other.set_cookie(PENDING_LOGIN_COOKIE, handle, path="/login")
    replay = other.post("/login/totp", data={"code": device.code(steps=1), "csrf_token": token})
    assert replay.status_code == 303 and replay.headers["Location"] == "/login"
    assert other.get("/api/me").status_code == 401


def test_totp_page_without_a_half_login_goes_back_to_login(client):
    assert client.get("/login/totp").headers["Location"] == "/login"


def test_user_without_totp_logs_in_with_password_only(client, services):
    make_user(services, "bob")
    response = password_step(client, "bob")
    assert response.headers["Location"] == "/account"
    assert client.get("/api/me").json["auth_method"] == "password"


# -- policy ---------------------------------------------------------------------


def test_policy_all_sends_an_unenrolled_user_to_enrolment_before_the_login_completes(client, services, clock):
    services.totp.required = "all"
    make_user(services, "carol")
    first = password_step(client, "carol", "/account")
    assert first.status_code == 303 and first.headers["Location"] == "/login/totp/setup"
    assert client.get("/login/totp").headers["Location"] == "/login/totp/setup"
    assert client.get("/api/me").status_code == 401

    page = client.get("/login/totp/setup")
    assert page.status_code == 200 and "<svg" in page.text and "otpauth://totp/localhost:carol" in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    assert secret in client.get("/login/totp/setup").text  # a reload shows the same secret
    done = client.post("/login/totp/setup", data={"code": Authenticator(secret, clock).code(),
                                                  "csrf_token": csrf_token(page.text)})
    assert done.status_code == 200
    codes = re.findall(r"<li>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</li>", done.text)
    assert len(codes) == 10
    assert 'href="/account"' in done.text
    assert client.get("/api/me").json["auth_method"] == "password+totp"

    client.post("/api/session/logout", json={})
    assert password_step(client, "carol").headers["Location"] == "/login/totp"


def test_policy_admins_covers_admins_only(client, services):
    services.totp.required = "admins"
    make_user(services, "root", admin=True)
    make_user(services, "bob")
    assert password_step(client, "bob").headers["Location"] == "/account"
    assert password_step(client.application.test_client(), "root").headers["Location"] == "/login/totp/setup"


def test_json_login_of_an_unenrolled_user_under_policy_is_refused_with_the_fix(client, services):
    services.totp.required = "all"
    make_user(services, "carol")
    response = login(client, "carol")
    assert response.status_code == 403
    assert response.json["error"] == "totp_enrolment_required" and "/login" in response.json["error_description"]
    assert client.get("/api/me").status_code == 401


# -- JSON login -----------------------------------------------------------------


def test_json_login_without_a_code_is_totp_required(client, services):
    enrol_totp(services, make_user(services, "alice"))
    response = login(client, "alice")
    assert response.status_code == 401 and response.json["error"] == "totp_required"
    assert client.get("/api/me").status_code == 401


def test_json_login_with_a_wrong_code_is_invalid_totp(client, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    response = client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD,
                                                        "totp_code": wrong_code(device)})
    assert response.status_code == 401 and response.json["error"] == "invalid_totp"


def test_json_login_with_the_right_code_records_amr_and_acr(client, services, db):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    response = client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD,
                                                        "totp_code": device.code()})
    assert response.status_code == 200
    assert response.json["auth_method"] == "password+totp"
    assert response.json["amr"] == ["pwd", "otp", "mfa"]
    row = db.session.execute(text("SELECT amr, acr FROM sso_sessions")).one()
    assert row.acr == "2"
    me = client.get("/api/me").json
    assert me["auth_method"] == "password+totp" and me["amr"] == ["pwd", "otp", "mfa"]


def test_json_login_replaying_a_code_fails(client, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    body = {"username": "alice", "password": DEFAULT_PASSWORD, "totp_code": device.code()}
    assert client.post("/api/session/login", json=body).status_code == 200
    replay = client.application.test_client().post("/api/session/login", json=body)
    assert replay.status_code == 401 and replay.json["error"] == "invalid_totp"


def test_json_login_with_a_recovery_code_works_once(client, services):
    _, codes = enrol_totp(services, make_user(services, "alice"))
    body = {"username": "alice", "password": DEFAULT_PASSWORD, "recovery_code": codes[5]}
    assert client.post("/api/session/login", json=body).json["auth_method"] == "password+totp"
    again = client.application.test_client().post("/api/session/login", json=body)
    assert again.status_code == 401 and again.json["error"] == "invalid_recovery_code"


def test_json_login_with_a_wrong_password_never_mentions_totp(client, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    response = client.post("/api/session/login", json={"username": "alice", "password": "wrong password",
                                                        "totp_code": device.code()})
    assert response.status_code == 401 and response.json["error"] == "invalid_credentials"


@pytest.mark.parametrize("field,value", [("totp_code", 123456), ("recovery_code", ["x"]), ("totp_code", "9" * 65)])
def test_json_login_with_malformed_codes_is_400(client, services, field, value):
    make_user(services, "alice")
    body = {"username": "alice", "password": DEFAULT_PASSWORD, field: value}
    assert client.post("/api/session/login", json=body).status_code == 400


def test_logins_and_failures_are_audited(client, services, db):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    client.post("/api/session/login", json={"username": "alice", "password": "nope nope"})
    client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD,
                                             "totp_code": wrong_code(device)})
    client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD,
                                             "totp_code": device.code()})
    events = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action.in_(
        ["login.failed", "totp.failed", "session.open"])).order_by(AuditEvent.id)).all()
    assert [(e.action, e.outcome) for e in events] == [
        ("login.failed", "failure"), ("totp.failed", "failure"), ("session.open", "success")]
    assert events[2].details == {"auth_method": "password+totp"}
