"""TOTP over JSON for first-party apps: /api/me/totp, and the admin reset."""

import pytest

from authserver.audit.models import AuditEvent
from tests.helpers.factories import Authenticator, enrol_totp, login, make_user


@pytest.fixture
def alice(client, services):
    user = make_user(services, "alice")
    assert login(client, "alice").status_code == 200
    return user


def test_enrol_confirm_then_status(client, services, clock, alice):
    started = client.post("/api/me/totp", json={})
    assert started.status_code == 200
    body = started.json
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["otpauth_uri"] == f"otpauth://totp/localhost:alice?secret={body['secret']}&issuer=localhost"
    assert body["qr_svg"].startswith("<svg")
    assert client.get("/api/me/totp").json == {"enabled": False, "confirmed_at": None, "pending": True,
                                               "recovery_codes_left": 0, "required": False}

    device = Authenticator(body["secret"], clock)
    wrong = client.post("/api/me/totp/confirm", json={"code": device.code(steps=4)})
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_totp"
    confirmed = client.post("/api/me/totp/confirm", json={"code": device.code()})
    assert confirmed.status_code == 200
    assert len(confirmed.json["recovery_codes"]) == 10
    status = client.get("/api/me/totp").json
    assert status["enabled"] and status["recovery_codes_left"] == 10 and not status["pending"]


def test_confirm_without_pending_enrolment_is_409(client, alice):
    response = client.post("/api/me/totp/confirm", json={"code": "123456"})
    assert response.status_code == 409 and response.json["error"] == "no_pending_enrolment"


def test_re_enrolment_over_json_keeps_the_old_secret_until_confirmed(client, services, clock, alice):
    old_device, _ = enrol_totp(services, alice)
    # Replacing the factor needs the current one (ASVS 6.4.3): a session alone is not enough.
    bare = client.post("/api/me/totp", json={})
    assert bare.status_code == 400 and "current code" in bare.json["error_description"]
    wrong = client.post("/api/me/totp", json={"code": "000000" if old_device.code() != "000000" else "999999"})
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_totp"
    new_secret = client.post("/api/me/totp", json={"code": old_device.code()}).json["secret"]
    clock.advance(seconds=30)
    client.post("/api/session/logout", json={})
    response = client.post("/api/session/login", json={"username": "alice", "password": "correct horse battery staple",
                                                        "totp_code": old_device.code()})
    assert response.status_code == 200
    clock.advance(seconds=30)
    confirmed = client.post("/api/me/totp/confirm", json={"code": Authenticator(new_secret, clock).code()})
    assert confirmed.status_code == 200
    assert services.totp.verify(alice, Authenticator(new_secret, clock).code(steps=1))


def test_disable_with_a_current_code(client, services, alice):
    device, _ = enrol_totp(services, alice)
    missing = client.delete("/api/me/totp", json={})
    assert missing.status_code == 400
    wrong = client.delete("/api/me/totp", json={"code": "000000" if device.code() != "000000" else "999999"})
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_totp"
    assert client.delete("/api/me/totp", json={"code": device.code()}).json == {"enabled": False}
    assert client.get("/api/me/totp").json["enabled"] is False


def test_disable_is_refused_when_policy_requires_totp(client, services, alice):
    device, _ = enrol_totp(services, alice)
    services.totp.required = "all"
    response = client.delete("/api/me/totp", json={"code": device.code()})
    assert response.status_code == 403 and response.json["error"] == "totp_required_by_policy"


def test_regenerate_recovery_codes_over_json(client, services, alice):
    device, old = enrol_totp(services, alice)
    response = client.post("/api/me/totp/recovery-codes", json={"code": device.code()})
    assert response.status_code == 200
    new = response.json["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/me/totp", {}),
    ("post", "/api/me/totp/confirm", {"code": "123456"}),
    ("delete", "/api/me/totp", {"code": "123456"}),
    ("get", "/api/me/totp", None),
])
def test_totp_endpoints_need_a_login(client, method, path, body):
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 401


def test_cookie_writes_must_be_json_and_same_origin(client, alice):
    assert client.post("/api/me/totp", data="x", content_type="text/plain").status_code == 415
    cross = client.post("/api/me/totp", json={}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and cross.json["error"] == "cross_origin"


@pytest.mark.parametrize("body", [{"code": 123456}, {"code": "1" * 65}, {"code": None}])
def test_bad_confirm_bodies_are_400(client, alice, body):
    client.post("/api/me/totp", json={})
    assert client.post("/api/me/totp/confirm", json=body).status_code == 400


def test_admin_resets_a_users_totp(client, services, db):
    make_user(services, "root", admin=True)
    bob = make_user(services, "bob")
    enrol_totp(services, bob)
    login(client, "root")
    response = client.post("/api/admin/users/bob/totp/reset", json={})
    assert response.status_code == 200
    assert response.json == {"username": "bob", "reset": True, "had_totp": True}
    assert not services.totp.is_enrolled(bob)
    event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "totp.reset")).one()
    assert (event.actor, event.target) == ("user:root", "user:bob")
    assert client.post("/api/admin/users/nobody/totp/reset", json={}).status_code == 404


def test_only_admins_reset(client, services):
    make_user(services, "mallory")
    enrol_totp(services, make_user(services, "bob"))
    login(client, "mallory")
    assert client.post("/api/admin/users/bob/totp/reset", json={}).status_code == 403
