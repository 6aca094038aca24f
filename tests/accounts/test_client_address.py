"""Security II §1 over real HTTP: the client's real address behind a reverse proxy, and
throttles that nobody can aim at others, shared by two worker processes and kept over a restart.

The clients below connect from different loopback addresses (127.0.x.y), as different
machines would; nginx (config/examples/nginx-authserver.conf) stands in front of the server.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select

from authserver.access_rules import parse_networks
from authserver.audit.models import AuditEvent
from authserver.extensions import db
from tests.helpers.database import empty_tables
from tests.helpers.factories import DEFAULT_PASSWORD, make_key, make_user
from tests.helpers.proxies import run_nginx_in_front
from tests.helpers.servers import Instance, LiveServer
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.live


class FromAddress(HTTPAdapter):
    """Connect from a given local address, as a client on another machine would."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def browser_at(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def login(address: str, base: str, username: str, password: str, **headers) -> requests.Response:
    return browser_at(address).post(base + "/api/session/login", json={"username": username, "password": password},
                                    headers=headers, timeout=30)


def guesses_at_once(count: int, address: str, base: str, username: str) -> list[int]:
    """`count` wrong passwords for one account from one address, released together; their statuses."""
    barrier = threading.Barrier(count)

    def guess(_):
        barrier.wait()
        return login(address, base, username, "wrong").status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(guess, range(count)))


def failed_login_addresses(username: str) -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent.ip).where(AuditEvent.action == "login.failed", AuditEvent.actor == f"user:{username}")
        .order_by(AuditEvent.id)))


def served(backend, database_urls, tmp_path, clock, **changes):
    from authserver import create_app

    app = create_app(make_settings(tmp_path, database_urls[backend], **changes), clock=clock)
    app.config["TESTING"] = True
    return app


@contextmanager
def server_behind_nginx(backend, database_urls, tmp_path, clock, **changes):
    """The server on a live port, nginx (config/examples/nginx-authserver.conf) in front of it:
    (services, nginx's URL, the server's own URL)."""
    app = served(backend, database_urls, tmp_path, clock, **changes)
    with app.app_context():
        server = LiveServer(app).start()
        try:
            with run_nginx_in_front(tmp_path / "nginx", server.port) as url:
                yield app.extensions["authserver"], url, server.url
        finally:
            server.stop()
            empty_tables()
            db.engine.dispose()


@pytest.fixture
def behind_nginx(backend, database_urls, tmp_path, clock):
    """nginx (on loopback, 127.0.0.1) named as the server's trusted proxy."""
    with server_behind_nginx(backend, database_urls, tmp_path, clock,
                             trusted_proxies=parse_networks("127.0.0.1/32")) as (services, url, _):
        yield services, url


@pytest.fixture
def untrusting(backend, database_urls, tmp_path, clock):
    """The same, but nobody is named as a trusted proxy (the default)."""
    with server_behind_nginx(backend, database_urls, tmp_path, clock) as served_:
        yield served_


def test_behind_nginx_nobody_can_lock_a_user_out(behind_nginx):
    """On 50170db: 130 failures with random usernames from behind the proxy, then alice got 429."""
    services, url = behind_nginx
    make_user(services, "alice")
    # An attacker at one address: random usernames and alice's, until its own address is refused.
    answers = [login("127.0.1.1", url, f"random-{i}", "wrong").status_code for i in range(60)]
    assert 429 in answers and answers[0] == 401
    # More attackers, each from its own address, against alice directly.
    for i in range(2, 24):
        assert login(f"127.0.1.{i}", url, "alice", "wrong").status_code == 401
    # alice, at home, with her right password.
    assert login("127.0.0.50", url, "alice", DEFAULT_PASSWORD).status_code == 200
    # The audit log names each attacker's own address, not nginx's.
    addresses = failed_login_addresses("alice")
    assert set(addresses) == {f"127.0.1.{i}" for i in range(2, 24)}


def test_behind_nginx_a_forged_x_forwarded_for_does_not_change_the_address(behind_nginx):
    services, url = behind_nginx
    make_user(services, "alice")
    tries = services.throttle.rules["password:pair"][0]
    for i in range(tries):
        forged = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        assert login("127.0.2.9", url, "alice", "wrong", **forged).status_code == 401
    refused = login("127.0.2.9", url, "alice", DEFAULT_PASSWORD, **{"X-Forwarded-For": "198.51.100.200"})
    assert refused.status_code == 429
    assert set(failed_login_addresses("alice")) == {"127.0.2.9"}


def test_behind_nginx_key_address_ranges_see_the_client(behind_nginx):
    services, url = behind_nginx
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, cidrs=["127.0.3.0/24"])
    headers = {"X-API-Key": f"{key_id}:{secret}"}
    assert browser_at("127.0.3.7").get(url + "/api/me", headers=headers, timeout=10).status_code == 200
    assert browser_at("127.0.4.7").get(url + "/api/me", headers=headers, timeout=10).status_code == 401


def test_without_the_setting_forwarding_headers_are_ignored(untrusting):
    services, nginx_url, direct_url = untrusting
    make_user(services, "alice")
    # Straight to the server: a client's own X-Forwarded-For is not believed.
    assert login("127.0.5.5", direct_url, "alice", "wrong", **{"X-Forwarded-For": "198.51.100.1"}).status_code == 401
    # Through nginx, not named as trusted: every client is nginx's 127.0.0.1.
    assert login("127.0.5.6", nginx_url, "alice", "wrong").status_code == 401
    assert failed_login_addresses("alice") == ["127.0.5.5", "127.0.0.1"]


def test_parallel_guesses_with_two_workers_hold_the_limit_exactly_and_survive_a_restart(tmp_path):
    """40 wrong passwords at once for one account from one address: exactly the limit is checked."""
    instance = Instance(tmp_path / "instance", AUTHSERVER_WORKERS="2", AUTHSERVER_THREADS="8",
                        AUTHSERVER_ARGON2_MEMORY_KIB="19456")
    assert instance.cli("db", "upgrade").returncode == 0
    created = instance.cli("user", "create", "alice", "--email", "a@photos.test", "--password", DEFAULT_PASSWORD)
    assert created.returncode == 0
    instance.serve()
    try:
        answers = guesses_at_once(40, "127.0.6.6", instance.url, "alice")
        from authserver.throttle import DEFAULT_RULES

        allowed = DEFAULT_RULES["password:pair"][0]
        assert sorted(answers) == [401] * allowed + [429] * (40 - allowed)
        instance.stop()
        instance.serve()
        assert login("127.0.6.6", instance.url, "alice", DEFAULT_PASSWORD).status_code == 429
        assert login("127.0.6.7", instance.url, "alice", DEFAULT_PASSWORD).status_code == 200
    finally:
        instance.stop()


def test_an_account_under_attack_gives_each_fresh_address_one_try_even_in_parallel(live_server, services):
    """Black-box review: 40 parallel guesses from one fresh address got up to 5 checked."""
    make_user(services, "bob")
    alarm = services.throttle.rules["password:account"][0]
    for i in range(alarm):
        assert login(f"127.0.7.{i + 1}", live_server.url, "bob", "wrong").status_code == 401
    answers = guesses_at_once(20, "127.0.8.8", live_server.url, "bob")
    assert sorted(answers) == [401] + [429] * 19
    assert login("127.0.8.9", live_server.url, "bob", DEFAULT_PASSWORD).status_code == 200
