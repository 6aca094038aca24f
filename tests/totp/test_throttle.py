"""Failed passwords and codes are throttled per account and per address, in memory or in Redis.

Redis runs when AUTHSERVER_TEST_REDIS_URL names a server (`.ci/run` starts one).
Every test uses its own usernames and addresses, so a shared Redis needs no flushing.
"""

import os
import secrets

import pytest

from authserver import create_app
from authserver.audit.models import AuditEvent
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, csrf_token, enrol_totp, make_user

REDIS_URL = os.environ.get("AUTHSERVER_TEST_REDIS_URL", "")


@pytest.fixture(params=["memory", "redis"])
def settings(request, backend, database_urls, tmp_path):
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("Redis not configured: set AUTHSERVER_TEST_REDIS_URL (.ci/run does)")
    return make_settings(tmp_path, database_urls[backend], redis_url=REDIS_URL if request.param == "redis" else None)


def new_address() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def new_name() -> str:
    return "u" + secrets.token_hex(6)


def client_at(app, address=None):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address or new_address()
    return client


def json_login(client, username, password, **extra):
    return client.post("/api/session/login", json={"username": username, "password": password, **extra})


def wrong_code(device) -> str:
    return next(c for c in ("000000", "111111", "222222") if c not in {device.code(s) for s in (-1, 0, 1)})


def test_failed_passwords_are_throttled_per_account(app, services):
    name = new_name()
    make_user(services, name)
    limit = services.throttle.rules["password:account"].amount
    for _ in range(limit):
        # A fresh address each time: only the account bucket fills up.
        assert json_login(client_at(app), name, "wrong password").status_code == 401
    refused = json_login(client_at(app), name, DEFAULT_PASSWORD)  # even the right password
    assert refused.status_code == 429
    assert refused.json["error"] == "too_many_requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    other = new_name()
    make_user(services, other)
    assert json_login(client_at(app), other, DEFAULT_PASSWORD).status_code == 200


def test_unknown_usernames_look_exactly_like_known_ones(app, services):
    known = new_name()
    make_user(services, known)
    limit = services.throttle.rules["password:account"].amount

    def attempts(username):
        return [json_login(client_at(app), username, "wrong password") for _ in range(limit + 1)]

    known_answers, unknown_answers = attempts(known), attempts(new_name())
    assert [r.status_code for r in known_answers] == [401] * limit + [429]
    assert [r.status_code for r in unknown_answers] == [401] * limit + [429]
    assert [r.json for r in unknown_answers[:limit]] == [r.json for r in known_answers[:limit]]
    assert unknown_answers[-1].json["error"] == known_answers[-1].json["error"] == "too_many_requests"
    assert "Retry-After" in unknown_answers[-1].headers


def test_failed_passwords_are_throttled_per_address(app, services):
    address = new_address()
    limit = services.throttle.rules["password:address"].amount
    for _ in range(limit):
        assert json_login(client_at(app, address), new_name(), "wrong password").status_code == 401
    name = new_name()
    make_user(services, name)
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 429
    assert json_login(client_at(app), name, DEFAULT_PASSWORD).status_code == 200


def test_failed_codes_are_throttled_per_account(app, services, db):
    name = new_name()
    device, _ = enrol_totp(services, make_user(services, name))
    limit = services.throttle.rules["totp:account"].amount
    for _ in range(limit):
        answer = json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=wrong_code(device))
        assert answer.status_code == 401 and answer.json["error"] == "invalid_totp"
    refused = json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=device.code())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert db.session.scalars(db.select(AuditEvent.action).where(AuditEvent.action == "totp.throttled")).all()


def test_failed_recovery_codes_count_as_failed_codes(app, services):
    name = new_name()
    _, codes = enrol_totp(services, make_user(services, name))
    limit = services.throttle.rules["totp:account"].amount
    for _ in range(limit):
        json_login(client_at(app), name, DEFAULT_PASSWORD, recovery_code="AAAA-BBBB-CCCC-DDDD")
    assert json_login(client_at(app), name, DEFAULT_PASSWORD, recovery_code=codes[0]).status_code == 429


def test_failed_codes_are_throttled_per_address(app, services):
    address = new_address()
    limit = services.throttle.rules["totp:address"].amount
    users = []
    while sum(n for _, n in users) < limit:
        name = new_name()
        device, _ = enrol_totp(services, make_user(services, name))
        tries = min(services.throttle.rules["totp:account"].amount - 1, limit - sum(n for _, n in users))
        for _ in range(tries):
            assert json_login(client_at(app, address), name, DEFAULT_PASSWORD,
                              totp_code=wrong_code(device)).status_code == 401
        users.append(((name, device), tries))
    (name, device), _ = users[0]
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 429
    assert json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 200




def test_browser_forms_answer_429_with_retry_after(app, services):
    name = new_name()
    device, _ = enrol_totp(services, make_user(services, name))
    address = new_address()
    browser = client_at(app, address)
    token = csrf_token(browser.get("/login").text)
    for _ in range(services.throttle.rules["password:account"].amount):
        browser.post("/login", data={"username": name, "password": "wrong password", "csrf_token": token})
    page = browser.post("/login", data={"username": name, "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert page.status_code == 429 and "Retry-After" in page.headers and "Too many failed attempts" in page.text

    other = new_name()
    device, _ = enrol_totp(services, make_user(services, other))
    browser = client_at(app)
    token = csrf_token(browser.get("/login").text)
    assert browser.post("/login", data={"username": other, "password": DEFAULT_PASSWORD,
                                        "csrf_token": token}).headers["Location"] == "/login/totp"
    for _ in range(services.throttle.rules["totp:account"].amount):
        browser.post("/login/totp", data={"code": wrong_code(device), "csrf_token": token})
    page = browser.post("/login/totp", data={"code": device.code(), "csrf_token": token})
    assert page.status_code == 429 and "Retry-After" in page.headers


@pytest.mark.parametrize("settings", ["redis"], indirect=True)
def test_every_worker_sees_the_same_counts_in_redis(app, services, settings, clock):
    second_worker = create_app(settings, clock=clock)
    name = new_name()
    make_user(services, name)
    limit = services.throttle.rules["password:account"].amount
    workers = [app, second_worker]
    for i in range(limit):
        assert json_login(client_at(workers[i % 2]), name, "wrong password").status_code == 401
    assert json_login(client_at(second_worker), name, DEFAULT_PASSWORD).status_code == 429
    assert json_login(client_at(app), name, DEFAULT_PASSWORD).status_code == 429
