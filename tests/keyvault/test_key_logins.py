"""Every way a key logs in, and how a bad key is answered, throttled and audited."""

import base64
import logging

import pytest

from authserver.audit.models import AuditEvent
from keyvault import keyformat
from tests.helpers.database import counted_statements
from tests.helpers.factories import basic_auth, key_headers, make_key, make_user

GENERIC = {"error": "invalid_key", "error_description": "The API key is not valid, or not usable from here."}




HEADER_STYLES = ["raw", "basic", "x-api-key"]


@pytest.mark.parametrize("style", HEADER_STYLES)
def test_key_header_answers_as_the_owner_with_the_keys_scopes(client, services, style):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["photos:read"])
    response = client.get("/api/me", headers=key_headers(style, key_id, secret))
    assert response.status_code == 200
    assert response.json["username"] == "alice"
    assert response.json["auth_method"] == "api_key"
    assert response.json["scopes"] == ["photos:read"]
    assert response.json["key_id"] == key_id


def test_json_login_with_a_key_opens_a_session_limited_to_its_scopes(client, services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["profile", "photos:write"])
    response = client.post("/api/session/login", json={"username": key_id, "password": secret})
    assert response.status_code == 200
    assert response.json["auth_method"] == "api_key"
    assert response.json["key_id"] == key_id
    assert response.json["scopes"] == ["photos:write", "profile"]
    assert "error" not in response.json
    me = client.get("/api/me")  # the session cookie now
    assert me.json["auth_method"] == "api_key" and me.json["scopes"] == ["photos:write", "profile"]


def test_key_login_never_asks_for_totp(client, services, db):
    """The TOTP capability answers a password login of this user with totp_required; a key login skips it."""
    alice = make_user(services, "alice")
    alice.attributes = {"totp_enrolled": True}
    db.session.commit()
    key_id, secret = make_key(services, alice)
    for response in (
        client.post("/api/session/login", json={"username": key_id, "password": secret}),
        client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"}),
    ):
        assert response.status_code == 200
        assert response.json.get("error") != "totp_required"
        assert response.json["auth_method"] == "api_key"


def test_revoking_a_key_ends_the_sessions_opened_with_it(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    client.post("/api/session/login", json={"username": key_id, "password": secret})
    assert client.get("/api/me").status_code == 200
    services.keys.revoke(services.keys.find(key_id), actor="test")
    assert client.get("/api/me").status_code == 401


def test_session_from_an_expiring_key_ends_with_the_key(client, services, clock):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, expires_in_days=1)
    client.post("/api/session/login", json={"username": key_id, "password": secret})
    for _ in range(3):  # stay active, within the idle timeout
        clock.advance(hours=7)
        assert client.get("/api/me").status_code == 200
    clock.advance(hours=2, minutes=59)
    assert client.get("/api/me").status_code == 200
    clock.advance(minutes=1)
    assert client.get("/api/me").status_code == 401


def bad_variants(services, clock):
    """(description, key_id, secret, remote address) for each way a key can be refused."""
    alice = make_user(services, "alice")
    good_id, good_secret = make_key(services, alice, name="good")
    revoked_id, revoked_secret = make_key(services, alice, name="revoked")
    services.keys.revoke(services.keys.find(revoked_id), actor="test")
    expiring_id, expiring_secret = make_key(services, alice, name="expiring", expires_in_days=1)
    ranged_id, ranged_secret = make_key(services, alice, name="ranged", cidrs=["192.0.2.0/24"])
    clock.advance(days=2)
    return [
        ("wrong secret", good_id, keyformat.new_secret(), "127.0.0.1"),
        ("checksum", good_id, good_secret[:-1] + ("0" if good_secret[-1] != "0" else "1"), "127.0.0.1"),
        ("unknown", keyformat.new_key_id(clock.now().date()), keyformat.new_secret(), "127.0.0.1"),
        ("revoked", revoked_id, revoked_secret, "127.0.0.1"),
        ("expired", expiring_id, expiring_secret, "127.0.0.1"),
        ("out of range", ranged_id, ranged_secret, "198.51.100.1"),
    ]


@pytest.mark.parametrize("style", HEADER_STYLES + ["json"])
def test_every_bad_key_gets_the_same_401(client, services, clock, style):
    for label, key_id, secret, ip in bad_variants(services, clock):
        if style == "json":
            response = client.post("/api/session/login", json={"username": key_id, "password": secret},
                                   environ_base={"REMOTE_ADDR": ip})
        else:
            response = client.get("/api/me", headers=key_headers(style, key_id, secret),
                                  environ_base={"REMOTE_ADDR": ip})
        assert response.status_code == 401, label
        assert response.json == GENERIC, label


def test_key_in_range_is_accepted_over_http(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, cidrs=["2001:db8::/32"])
    headers = {"X-API-Key": f"{key_id}:{secret}"}
    assert client.get("/api/me", headers=headers, environ_base={"REMOTE_ADDR": "2001:db8::7"}).status_code == 200
    assert client.get("/api/me", headers=headers, environ_base={"REMOTE_ADDR": "2001:db9::7"}).status_code == 401


def test_bad_key_is_not_ignored_in_favour_of_a_session_cookie(client, services):
    alice = make_user(services, "alice")
    client.post("/api/session/login", json={"username": "alice", "password": "correct horse battery staple"})
    key_id, _ = make_key(services, alice)
    response = client.get("/api/me", headers={"X-API-Key": f"{key_id}:{keyformat.new_secret()}"})
    assert response.status_code == 401


@pytest.mark.parametrize("authorization", ["Bearer not-a-token-this-server-issued", "Bearer pkid-20260101-nope:x"])
def test_a_bad_bearer_credential_is_not_ignored_in_favour_of_a_session_cookie(client, services, authorization):
    make_user(services, "alice")
    client.post("/api/session/login", json={"username": "alice", "password": "correct horse battery staple"})
    assert client.get("/api/me").status_code == 200
    response = client.get("/api/me", headers={"Authorization": authorization})
    assert response.status_code == 401, response.json
    assert client.get("/api/authz/forward-auth", headers={
        "Authorization": authorization, "X-Original-URL": "http://photos.example/"}).status_code == 401


def test_a_key_sent_as_a_bearer_credential_logs_in_as_the_key(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["photos:read"])
    response = client.get("/api/me", headers={"Authorization": f"Bearer {key_id}:{secret}"})
    assert response.status_code == 200 and response.json["key_id"] == key_id
    assert response.json["scopes"] == ["photos:read"]


def test_two_different_keys_in_one_request_are_refused(client, services):
    alice = make_user(services, "alice")
    first = make_key(services, alice, name="one")
    second = make_key(services, alice, name="two")
    response = client.get("/api/me", headers={"Authorization": ":".join(first), "X-API-Key": ":".join(second)})
    assert response.status_code == 401


def test_basic_auth_for_a_normal_user_is_not_a_key(client, services):
    make_user(services, "alice")
    response = client.get("/api/me", headers={"Authorization": basic_auth("alice", "whatever")})
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    garbage = client.get("/api/me", headers={"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()})
    assert garbage.status_code == 401


def test_failed_key_uses_are_throttled_per_address(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    bad = {"X-API-Key": f"{key_id}:{keyformat.new_secret()}"}
    for _ in range(30):
        assert client.get("/api/me", headers=bad, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 401
    throttled = client.get("/api/me", headers=bad, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    login = client.post("/api/session/login", json={"username": key_id, "password": keyformat.new_secret()},
                        environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert login.status_code == 429
    # A valid key is never refused because other guesses from its address failed.
    valid = client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"},
                       environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert valid.status_code == 200
    assert client.post("/api/session/login", json={"username": key_id, "password": secret},
                       environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    other = client.get("/api/me", headers=bad, environ_base={"REMOTE_ADDR": "203.0.113.10"})
    assert other.status_code == 401


def test_failed_use_is_audited_with_reason_address_and_no_secret(client, services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    services.keys.revoke(services.keys.find(key_id), actor="test")
    client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"}, environ_base={"REMOTE_ADDR": "203.0.113.4"})
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "key.use"))
    assert event.outcome == "failure" and event.target == f"key:{key_id}"
    assert event.ip == "203.0.113.4" and event.details == {"reason": "revoked"} and event.at == services.clock.now()
    assert secret not in str(event.details)


def test_malformed_key_is_refused_before_looking_it_up(client, services, db):
    """A checksum failure never reads api_keys; only the failure's audit row is written."""
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    db.session.remove()
    with counted_statements(db) as statements:
        mistyped = secret[:-1] + ("x" if secret[-1] != "x" else "y")
        response = client.get("/api/me", headers={"X-API-Key": f"{key_id}:{mistyped}"})
    assert response.status_code == 401
    assert not [s for s in statements if "api_keys" in s]


def test_last_use_is_written_at_most_once_a_minute(client, services, clock, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    headers = {"X-API-Key": f"{key_id}:{secret}"}
    client.get("/api/me", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.8"})
    key = services.keys.find(key_id)
    assert key.last_used_at == clock.now() and key.last_used_ip == "192.0.2.8"
    clock.advance(seconds=59)
    db.session.remove()
    with counted_statements(db) as statements:
        assert client.get("/api/me", headers=headers).status_code == 200
    assert not [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    clock.advance(seconds=1)
    client.get("/api/me", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    db.session.remove()
    key = services.keys.find(key_id)
    assert key.last_used_at == clock.now() and key.last_used_ip == "192.0.2.9"


def test_no_secret_reaches_the_logs(client, services, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="authserver")
    admin = make_user(services, "root", admin=True)
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    admin_id, admin_secret = make_key(services, admin, scopes=["admin"])
    admin_headers = {"X-API-Key": f"{admin_id}:{admin_secret}"}
    secrets_seen = [secret, admin_secret]
    client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"})
    client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret[:-1]}0"})
    client.post("/api/session/login", json={"username": key_id, "password": secret[:-2] + "00"})
    client.get("/api/me", headers={"X-API-Key": f"{secret}:{key_id}"})
    minted = client.post("/api/keys", json={"name": "new", "user": "alice"}, headers=admin_headers).json
    rotated = client.post(f"/api/keys/{key_id}/rotate", json={"grace_seconds": 60}, headers=admin_headers).json
    secrets_seen += [minted["secret"], rotated["secret"]]
    client.delete(f"/api/keys/{key_id}", headers=admin_headers)
    client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"})
    out, err = capfd.readouterr()
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records) + out + err
    assert "key.mint" in text and "key.use" in text  # the audit trail was logged...
    for value in secrets_seen:
        assert value not in text  # ...without any secret
        assert value[:37] not in text


def test_successful_key_use_is_audited_once_a_minute_per_key(client, services, db, clock):
    """Every authentication event is in the audit log: a key's use too, with its owner and
    address, at most once a minute per key (with its last-use time), not once per request."""
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    headers = key_headers("x-api-key", key_id, secret)

    def uses() -> list[AuditEvent]:
        return db.session.scalars(db.select(AuditEvent).where(
            AuditEvent.action == "key.use", AuditEvent.outcome == "success")).all()

    for path in ("/api/me", "/api/authz/forward-auth", "/api/me"):
        assert client.get(path, headers={**headers, "X-Original-URL": "https://p.test/"}).status_code == 200
    assert len(uses()) == 1
    event = uses()[0]
    assert (event.actor, event.target, event.ip) == (f"key:{key_id}", "user:alice", "127.0.0.1")
    assert secret not in str(event.details)
    clock.advance(seconds=61)
    assert client.get("/api/me", headers=headers).status_code == 200
    assert len(uses()) == 2


def test_a_key_is_read_from_the_headers_the_settings_name_and_only_those(services, settings, clock):
    """AUTHSERVER_KEY_HEADERS=X-API-Key,X-PIWIGO-API: Piwigo 16.1's header works, for /api/* and
    forward-auth alike; a header not listed is not a credential."""
    from authserver import create_app

    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["photos:read"])
    piwigo = create_app(settings.replace(key_headers=("X-API-Key", "X-PIWIGO-API")), clock=clock).test_client()
    default = create_app(settings, clock=clock).test_client()
    headers = {"X-PIWIGO-API": f"{key_id}:{secret}"}
    me = piwigo.get("/api/me", headers=headers)
    assert me.status_code == 200 and me.json["key_id"] == key_id
    assert piwigo.get("/api/authz/forward-auth", headers={**headers, "X-Original-URL": "http://photos.example/"}
                      ).headers["Remote-User"] == "alice"
    assert default.get("/api/me", headers=headers).status_code == 401  # not a key header there
    wrong = piwigo.get("/api/me", headers={"X-PIWIGO-API": f"{key_id}:{keyformat.new_secret()}"})
    assert wrong.status_code == 401 and wrong.json == GENERIC
    two = piwigo.get("/api/me", headers={**headers, "X-API-Key": ":".join(make_key(services, alice, name="b"))})
    assert two.status_code == 401  # two different keys: refused, not one of them picked


def test_rotating_a_key_ends_the_sessions_opened_with_its_old_secret(client, services, clock):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    assert client.post("/api/session/login", json={"username": key_id, "password": secret}).status_code == 200
    assert client.get("/api/me").status_code == 200
    services.keys.rotate(services.keys.find(key_id), grace_seconds=0, actor="test")
    assert client.get("/api/me").status_code == 401


def test_with_a_grace_period_key_sessions_end_with_the_old_secret(client, services, clock):
    alice = make_user(services, "alice")
    key_id, old = make_key(services, alice)
    before = client.application.test_client()
    assert before.post("/api/session/login", json={"username": key_id, "password": old}).status_code == 200
    services.keys.rotate(services.keys.find(key_id), grace_seconds=60, actor="test")
    # Opened with the old secret during the grace: it ends when the grace does, like the one before.
    during = client.application.test_client()
    assert during.post("/api/session/login", json={"username": key_id, "password": old}).status_code == 200
    assert before.get("/api/me").status_code == 200 and during.get("/api/me").status_code == 200
    clock.advance(seconds=61)
    assert before.get("/api/me").status_code == 401 and during.get("/api/me").status_code == 401
