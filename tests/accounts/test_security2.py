"""Security II §2–§4: factors and email need proof, session and cookie hygiene, metrics, audit,
forward-auth paths. Each attack of issue 13 is performed over real HTTP first."""

from __future__ import annotations

import json
import os
import stat

import pytest
import requests
from sqlalchemy import select

from authserver import create_app
from authserver.access_rules import load_rules, parse_networks
from authserver.audit.models import AuditEvent
from authserver.cookies import SESSION_COOKIE
from authserver.extensions import db
from authserver.schema import upgrade
from tests.helpers.csrf import csrf_token
from tests.helpers.database import empty_tables
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, make_client, make_user
from tests.helpers.servers import LiveServer
from tests.helpers.settings import make_settings


def json_session(live_server, username="alice", **extra) -> requests.Session:
    http = requests.Session()
    response = http.post(live_server.url + "/api/session/login",
                         json={"username": username, "password": DEFAULT_PASSWORD, **extra}, timeout=10)
    assert response.status_code == 200, response.text
    return http


def actions(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- §2 replacing a factor, changing the email -----------------------------------


def test_a_stolen_session_cannot_replace_the_second_factor(live_server, services, clock):
    """On 50170db: POST /api/me/totp {} gave a new secret to anyone holding the session."""
    alice = make_user(services, "alice")
    device, _ = enrol_totp(services, alice)
    http = json_session(live_server, totp_code=device.code())
    clock.advance(seconds=30)
    bare = http.post(live_server.url + "/api/me/totp", json={}, timeout=10)
    assert bare.status_code == 400 and "secret" not in bare.json()
    page = http.get(live_server.url + "/account/totp", timeout=10)
    started = http.post(live_server.url + "/account/totp/start", data={"csrf_token": csrf_token(page.text)},
                        allow_redirects=False, timeout=10)
    assert started.status_code == 400 and "current code" in started.text
    assert services.totp.pending_enrolment(alice) is None
    proved = http.post(live_server.url + "/api/me/totp", json={"code": device.code()}, timeout=10)
    assert proved.status_code == 200 and proved.json()["secret"]
    assert [e.details["replacing"] for e in actions("totp.enrol")][-1] is True


def test_a_stolen_session_cannot_change_the_email(live_server, services):
    make_user(services, "alice", email="alice@photos.example")
    http = json_session(live_server)
    page = http.get(live_server.url + "/account", timeout=10)
    changed = http.post(live_server.url + "/account/profile", allow_redirects=False, timeout=10, data={
        "csrf_token": csrf_token(page.text), "name": "Alice", "email": "eve@evil.example"})
    assert changed.status_code == 400
    assert services.accounts.find("alice").email == "alice@photos.example"


# -- §3 sessions and cookies ---------------------------------------------------------


def test_a_login_ends_the_session_it_replaces(live_server, services):
    make_user(services, "alice")
    http = json_session(live_server)
    old = http.cookies.get(SESSION_COOKIE)
    page = http.get(live_server.url + "/login", timeout=10)
    again = http.post(live_server.url + "/login", allow_redirects=False, timeout=10, data={
        "username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page.text)})
    assert again.status_code == 303
    new = http.cookies.get(SESSION_COOKIE)
    assert new and new != old
    replay = requests.get(live_server.url + "/api/me", cookies={SESSION_COOKIE: old}, timeout=10)
    assert replay.status_code == 401
    assert http.get(live_server.url + "/api/me", timeout=10).status_code == 200


def test_the_csrf_secret_changes_at_login_and_logout(live_server, services):
    make_user(services, "alice")
    http = requests.Session()
    before = csrf_token(http.get(live_server.url + "/login", timeout=10).text)
    signed = http.post(live_server.url + "/login", allow_redirects=False, timeout=10, data={
        "username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": before})
    assert signed.status_code == 303
    # A token read before the login does not work after it.
    stale = http.post(live_server.url + "/account/sessions/revoke-others", data={"csrf_token": before},
                      allow_redirects=False, timeout=10)
    assert stale.status_code == 400
    during = csrf_token(http.get(live_server.url + "/account", timeout=10).text)
    assert http.post(live_server.url + "/logout", data={"csrf_token": during}, allow_redirects=False,
                     timeout=10).status_code == 303
    after = http.post(live_server.url + "/login", allow_redirects=False, timeout=10, data={
        "username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": during})
    assert after.status_code == 400


def test_a_csrf_pair_minted_elsewhere_does_not_work_on_the_victims_session(live_server, services):
    """Black-box review: an attacker's own form cookie and token, planted beside the victim's
    session cookie (another app on the same host can set cookies), changed the victim's profile."""
    make_user(services, "alice", email="alice@photos.example")
    attacker = requests.Session()
    token = csrf_token(attacker.get(live_server.url + "/login", timeout=10).text)
    form_cookie = attacker.cookies.get("authserver_form")
    victim = json_session(live_server)
    forged = requests.post(live_server.url + "/account/profile", allow_redirects=False, timeout=10, data={
        "csrf_token": token, "name": "pwned", "email": "alice@photos.example"},
        cookies={SESSION_COOKIE: victim.cookies.get(SESSION_COOKIE), "authserver_form": form_cookie})
    assert forged.status_code == 400
    assert services.accounts.find("alice").name != "pwned"
    # The victim's own page works.
    page = victim.get(live_server.url + "/account", timeout=10)
    saved = victim.post(live_server.url + "/account/profile", allow_redirects=False, timeout=10, data={
        "csrf_token": csrf_token(page.text), "name": "Alice L", "email": "alice@photos.example"})
    assert saved.status_code == 303


def test_csrf_tokens_expire(client, services, monkeypatch):
    """A form left open longer than CSRF_TOKEN_SECONDS is refused (its token's time is signed)."""
    import time

    from itsdangerous.timed import TimestampSigner

    from authserver.settings import CSRF_TOKEN_SECONDS

    make_user(services, "alice")
    token = csrf_token(client.get("/login").text)
    later = int(time.time()) + CSRF_TOKEN_SECONDS + 60
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    stale = client.post("/login", data={"username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert stale.status_code == 400 and "expired" in stale.text
    fresh = csrf_token(client.get("/login").text)
    assert client.post("/login", data={"username": "alice", "password": DEFAULT_PASSWORD,
                                       "csrf_token": fresh}).status_code == 303


def test_cookies_carry_the_host_prefix_on_https(backend, database_urls, tmp_path):
    settings = make_settings(tmp_path, database_urls[backend], issuer="https://auth.photos.example")
    app = create_app(settings)
    with app.app_context():
        try:
            make_user(app.extensions["authserver"], "alice")
            http = app.test_client()
            page = http.get("/login", base_url="https://auth.photos.example")
            jar = [c for c in page.headers.getlist("Set-Cookie")]
            assert jar and all(c.startswith("__Host-") and "Secure" in c and "Path=/" in c and "Domain" not in c
                               for c in jar)
            signed = http.post("/login", base_url="https://auth.photos.example", data={
                "username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page.text)})
            names = [c.split("=", 1)[0] for c in signed.headers.getlist("Set-Cookie")]
            assert "__Host-authserver_session" in names
            # The old name is no credential any more: its holder logs in again.
            opened = app.extensions["authserver"].sessions.open(
                app.extensions["authserver"].accounts.find("alice"), auth_method="password", amr=["pwd"])
            legacy = app.test_client()
            legacy.set_cookie(SESSION_COOKIE, opened.cookie_value, domain="auth.photos.example")
            assert legacy.get("/api/me", base_url="https://auth.photos.example").status_code == 401
        finally:
            empty_tables()
            db.engine.dispose()


def test_the_sqlite_files_are_owner_only_whatever_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        database = tmp_path / "open-dir" / "authserver.db"
        database.parent.mkdir(mode=0o755)
        app = create_app(make_settings(tmp_path, f"sqlite:///{database}"))
        with app.app_context():
            upgrade()
            make_user(app.extensions["authserver"], "alice")
            files = [database, database.with_name("authserver.db-wal"), database.with_name("authserver.db-shm")]
            assert all(path.exists() for path in files)
            assert [stat.S_IMODE(path.stat().st_mode) for path in files] == [0o600] * 3
            db.engine.dispose()
    finally:
        os.umask(previous)


@pytest.mark.parametrize("restriction", ["token", "addresses"])
def test_metrics_can_be_restricted(backend, database_urls, tmp_path, restriction):
    changes = ({"metrics_token": "s3cret-metrics-token-123"} if restriction == "token"
               else {"metrics_addresses": parse_networks("10.9.0.0/16")})
    app = create_app(make_settings(tmp_path, database_urls[backend], **changes))
    with app.app_context():
        server = LiveServer(app).start()
        try:
            open_answer = requests.get(server.url + "/metrics", timeout=10)
            if restriction == "token":
                assert open_answer.status_code == 401
                wrong = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
                assert wrong.status_code == 401
                right = requests.get(server.url + "/metrics", timeout=10,
                                     headers={"Authorization": "Bearer s3cret-metrics-token-123"})
                assert right.status_code == 200 and "authserver_" in right.text
            else:
                assert open_answer.status_code == 403
        finally:
            server.stop()
            db.engine.dispose()


def test_client_credentials_issuance_is_audited_as_a_count(live_server, services, clock):
    service, secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read")
    for _ in range(5):
        assert requests.post(live_server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(service.client_id, secret), timeout=10).status_code == 200
    rows = actions("oauth.client_credentials_issued")
    assert [r.details["tokens"] for r in rows] == [1]  # the first token; the rest wait for the minute
    clock.advance(seconds=61)
    requests.post(live_server.url + "/oauth/token", data={"grant_type": "client_credentials"},
                  auth=(service.client_id, secret), timeout=10)
    assert [r.details["tokens"] for r in actions("oauth.client_credentials_issued")] == [1, 5]


# -- §4 forward-auth paths -----------------------------------------------------------

RULES = [
    {"host": "photos.test", "path": "/share", "policy": "bypass"},
    {"host": "photos.test", "path": "/admin", "policy": "two_factor", "groups": ["admins"]},
]


@pytest.fixture
def forward_auth(backend, database_urls, tmp_path, clock):
    settings = make_settings(tmp_path, database_urls[backend], trusted_proxies=parse_networks("127.0.0.1/32"),
                             forward_auth_rules=load_rules(json.dumps(RULES), "one_factor", base=tmp_path))
    app = create_app(settings, clock=clock)
    with app.app_context():
        server = LiveServer(app).start()
        try:
            yield app.extensions["authserver"], server.url
        finally:
            server.stop()
            empty_tables()
            db.engine.dispose()


@pytest.mark.parametrize("path", ["/admin", "/ADMIN", "/Admin/users", "/admin;x=1", "/admin;x=1/users",
                                  "/..;/admin", "/share/..;/admin", "/%41dmin", "/ADMIN/"])
def test_a_one_factor_user_outside_the_group_does_not_reach_admin(forward_auth, path):
    services, url = forward_auth
    make_user(services, "alice")
    http = json_session(type("Live", (), {"url": url}))
    answer = http.get(url + "/api/authz/forward-auth", headers={"X-Original-URL": f"https://photos.test{path}"},
                      timeout=10)
    assert answer.status_code == 403, path


def test_a_bypass_rule_opens_only_the_path_it_names(forward_auth):
    _, url = forward_auth
    assert requests.get(url + "/api/authz/forward-auth", headers={"X-Original-URL": "https://photos.test/share/a"},
                        timeout=10).status_code == 200
    for path in ("/SHARE/a", "/Share", "/share;x/../admin"):
        answer = requests.get(url + "/api/authz/forward-auth", timeout=10,
                              headers={"X-Original-URL": f"https://photos.test{path}"})
        assert answer.status_code == 401, path
