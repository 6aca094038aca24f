"""Throttling of passwords and second factors: nobody can aim it at someone else.

Counted in the database (the embedded default, shared by every worker) or in Redis when
AUTHSERVER_TEST_REDIS_URL names a server (`.ci/run` starts one). Every test uses its own
usernames and addresses; but account buckets are keyed by user id, and ids start again
from 1 in every test's emptied database, so each Redis test starts from an empty Redis
database. The policy is in docs/security.md ("Throttling").
"""

import os
import secrets

import pytest
import redis

from authserver import create_app
from authserver.audit.models import AuditEvent
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, make_user
from tests.helpers.settings import make_settings

REDIS_URL = os.environ.get("AUTHSERVER_TEST_REDIS_URL", "")


@pytest.fixture(params=["database", "redis"])
def settings(request, backend, database_urls, tmp_path):
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("Redis not configured: set AUTHSERVER_TEST_REDIS_URL (.ci/run does)")
    if request.param == "redis":
        with redis.Redis.from_url(REDIS_URL) as store:
            store.flushdb()
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


def limit(services, name: str) -> int:
    return services.throttle.rules[name][0]


def audited(db, action: str) -> int:
    return len(db.session.scalars(db.select(AuditEvent.id).where(AuditEvent.action == action)).all())


def test_failures_from_elsewhere_never_lock_the_user_out(app, services):
    """The attack of issue 13: wrong passwords for dave from many addresses, then dave logs in."""
    name = new_name()
    make_user(services, name)
    attackers = [new_address() for _ in range(3 * limit(services, "password:account"))]
    for address in attackers:
        assert json_login(client_at(app, address), name, "wrong password").status_code == 401
    # The account is under attack: the addresses that failed against it wait...
    refused = json_login(client_at(app, attackers[0]), name, DEFAULT_PASSWORD)
    # At most the period, or (the database store's weighted window) (1 + 1/limit) of it: docs/security.md.
    longest = 300 * (1 + 1 / limit(services, "password:account"))
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= longest
    # ...and dave, from an address that did not fail, gets in with the right password.
    assert json_login(client_at(app), name, DEFAULT_PASSWORD).status_code == 200


def test_one_address_gets_a_few_tries_per_account(app, services):
    name = new_name()
    make_user(services, name)
    address = new_address()
    tries = limit(services, "password:pair")
    for _ in range(tries):
        assert json_login(client_at(app, address), name, "wrong password").status_code == 401
    refused = json_login(client_at(app, address), name, DEFAULT_PASSWORD)  # even the right password
    assert refused.status_code == 429 and refused.json["error"] == "too_many_requests"
    assert json_login(client_at(app), name, DEFAULT_PASSWORD).status_code == 200


def test_a_success_starts_the_addresses_tries_afresh(app, services):
    name = new_name()
    make_user(services, name)
    address = new_address()
    # Twice one short of the address's tries: more failures in all than it allows, yet below
    # the account's alarm; each success in between starts the tries afresh.
    typos = limit(services, "password:pair") - 1
    for _ in range(2):
        for _ in range(typos):
            assert json_login(client_at(app, address), name, "typo").status_code == 401
        assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 200


def test_unknown_usernames_look_exactly_like_known_ones(app, services):
    known = new_name()
    make_user(services, known)
    tries = limit(services, "password:pair")

    def attempts(username):
        address = new_address()
        return [json_login(client_at(app, address), username, "wrong password") for _ in range(tries + 1)]

    known_answers, unknown_answers = attempts(known), attempts(new_name())
    assert [r.status_code for r in known_answers] == [401] * tries + [429]
    assert [r.status_code for r in unknown_answers] == [401] * tries + [429]
    assert [r.json for r in unknown_answers[:tries]] == [r.json for r in known_answers[:tries]]
    assert unknown_answers[-1].json["error"] == known_answers[-1].json["error"] == "too_many_requests"
    assert "Retry-After" in unknown_answers[-1].headers


def test_random_usernames_from_one_address_block_only_that_address(app, services, db):
    """SECURITY.md: 100 failures from random usernames must not block a real user with the right password."""
    address = new_address()
    answers = [json_login(client_at(app, address), new_name(), "wrong password").status_code for _ in range(100)]
    allowed = limit(services, "password:address")
    assert answers == [401] * allowed + [429] * (100 - allowed)
    assert audited(db, "login.throttled") == 100 - allowed
    name = new_name()
    make_user(services, name)
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 429
    assert json_login(client_at(app), name, DEFAULT_PASSWORD).status_code == 200


def test_wrong_codes_are_throttled_per_account_and_address(app, services, db):
    name = new_name()
    device, _ = enrol_totp(services, make_user(services, name))
    address = new_address()
    for _ in range(limit(services, "totp:pair")):
        answer = json_login(client_at(app, address), name, DEFAULT_PASSWORD, totp_code=wrong_code(device))
        assert answer.status_code == 401 and answer.json["error"] == "invalid_totp"
    refused = json_login(client_at(app, address), name, DEFAULT_PASSWORD, totp_code=device.code())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert audited(db, "totp.throttled") == 1
    # The right password and code from an address with no failures still get in.
    assert json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 200


def test_wrong_codes_from_many_addresses_do_not_lock_the_factor(app, services):
    """Someone who has the password cannot lock the owner's second factor from elsewhere."""
    name = new_name()
    device, _ = enrol_totp(services, make_user(services, name))
    for _ in range(3 * limit(services, "totp:account")):
        json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=wrong_code(device))
    assert json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 200


def test_failed_recovery_codes_count_as_failed_codes(app, services):
    name = new_name()
    _, codes = enrol_totp(services, make_user(services, name))
    address = new_address()
    for _ in range(limit(services, "totp:pair")):
        json_login(client_at(app, address), name, DEFAULT_PASSWORD, recovery_code="AAAA-BBBB-CCCC-DDDD")
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD, recovery_code=codes[0]).status_code == 429


def test_failed_codes_are_throttled_per_address(app, services):
    address = new_address()
    budget = limit(services, "totp:address")
    users, spent = [], 0
    while spent < budget:
        name = new_name()
        device, _ = enrol_totp(services, make_user(services, name))
        tries = min(limit(services, "totp:pair") - 1, budget - spent)
        for _ in range(tries):
            assert json_login(client_at(app, address), name, DEFAULT_PASSWORD,
                              totp_code=wrong_code(device)).status_code == 401
        users.append((name, device))
        spent += tries
    name, device = users[0]
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 429
    assert json_login(client_at(app), name, DEFAULT_PASSWORD, totp_code=device.code()).status_code == 200


def test_browser_forms_answer_429_with_retry_after(app, services):
    name = new_name()
    device, _ = enrol_totp(services, make_user(services, name))
    address = new_address()
    browser = client_at(app, address)
    token = csrf_token(browser.get("/login").text)
    for _ in range(limit(services, "password:pair")):
        browser.post("/login", data={"username": name, "password": "wrong password", "csrf_token": token})
    page = browser.post("/login", data={"username": name, "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert page.status_code == 429 and "Retry-After" in page.headers and "Too many attempts; try again in" in page.text

    other = new_name()
    device, _ = enrol_totp(services, make_user(services, other))
    browser = client_at(app)
    token = csrf_token(browser.get("/login").text)
    assert browser.post("/login", data={"username": other, "password": DEFAULT_PASSWORD,
                                        "csrf_token": token}).headers["Location"] == "/login/totp"
    for _ in range(limit(services, "totp:pair")):
        browser.post("/login/totp", data={"code": wrong_code(device), "csrf_token": token})
    page = browser.post("/login/totp", data={"code": device.code(), "csrf_token": token})
    assert page.status_code == 429 and "Retry-After" in page.headers


def test_every_worker_and_a_restart_see_the_same_counts(app, services, settings, clock):
    """Two app processes' worth of services on one store; then a fresh one, as after a restart."""
    second_worker = create_app(settings, clock=clock)
    name = new_name()
    make_user(services, name)
    address = new_address()
    workers = [app, second_worker]
    for i in range(limit(services, "password:pair")):
        assert json_login(client_at(workers[i % 2], address), name, "wrong password").status_code == 401
    assert json_login(client_at(second_worker, address), name, DEFAULT_PASSWORD).status_code == 429
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 429
    restarted = create_app(settings, clock=clock)
    assert json_login(client_at(restarted, address), name, DEFAULT_PASSWORD).status_code == 429


def locked_out(app, services, settings):
    """A user and an address that has used up its password tries for them (database store only:
    Redis windows follow the wall clock, the database store the app's clock)."""
    if settings.redis_url:
        pytest.skip("Redis windows follow the wall clock; the database store follows the app's clock")
    name = new_name()
    make_user(services, name)
    address = new_address()
    for _ in range(limit(services, "password:pair")):
        json_login(client_at(app, address), name, "wrong password")
    return name, address


def test_the_window_moves_on(app, services, settings, clock):
    name, address = locked_out(app, services, settings)
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 429
    clock.advance(seconds=2 * services.throttle.rules["password:pair"][1] + 1)
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 200


def test_retry_after_is_honest_however_often_the_refused_caller_knocks(app, services, settings, clock):
    """Refused attempts are not checked, so they do not count: a caller that tries again
    through its lock-out (a script, a user tapping "sign in") is let in once Retry-After has
    passed, as the header promised."""
    name, address = locked_out(app, services, settings)
    refused = json_login(client_at(app, address), name, DEFAULT_PASSWORD)
    assert refused.status_code == 429
    promised = int(refused.headers["Retry-After"])
    waited = 0
    while waited + 10 < promised:  # knocking every 10 s meanwhile, refused every time
        clock.advance(seconds=10)
        waited += 10
        assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 429
    clock.advance(seconds=promised - waited)
    assert json_login(client_at(app, address), name, DEFAULT_PASSWORD).status_code == 200
