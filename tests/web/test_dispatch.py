"""The dispatch answers the hottest requests before Flask, exactly as their Flask routes do.

Every comparison runs the same request against this app (dispatch on, the default)
and against a twin on the same database with AUTHSERVER_FAST_LANE=off, where Flask
answers everything through the same handlers.
"""

from __future__ import annotations

import io

import pytest
from flask import request_started
from sqlalchemy import func, select

from authserver import create_app
from authserver.audit.models import AuditEvent
from authserver.cookies import SESSION_COOKIE
from authserver.extensions import db as _db
from authserver.settings import Settings, SettingsError
from tests.helpers.factories import basic_auth, key_headers, login, make_client, make_key, make_user
from tests.helpers.oidc import exchange, get_code, logged_in

ORIGINAL = {"X-Original-URL": "https://photos.example/albums/1"}
# Differ from one answer to the next by design.
VOLATILE = {"X-Request-ID", "Content-Length"}


class Witness:
    """Outermost WSGI layer: notes for each request whether it reached Flask (its
    `request_started` signal) or was answered before it, by the dispatch."""

    def __init__(self, app):
        self.wsgi_app = app.wsgi_app
        self.answered: list[bool] = []
        self.flask_saw = False
        request_started.connect(self._flask_started, app, weak=False)

    def _flask_started(self, sender, **extra):
        self.flask_saw = True

    def __call__(self, environ, start_response):
        self.flask_saw = False
        body = self.wsgi_app(environ, start_response)
        self.answered.append(not self.flask_saw)
        return body


@pytest.fixture
def client(app):
    app.wsgi_app = Witness(app)
    return app.test_client()


@pytest.fixture
def flask_only(settings, clock):
    """A test client of the same app with the dispatch off: Flask answers everything."""
    other = create_app(settings.replace(fast_lane=False), clock=clock)
    other.config["TESTING"] = True
    other.wsgi_app = Witness(other)
    yield other.test_client()
    with other.app_context():
        _db.engine.dispose()


@pytest.fixture
def alice(services):
    return make_user(services, "alice", groups=["family", "friends"], name="Alice Liddell")


def lane(test_client) -> bool:
    """Did the dispatch answer this client's latest request (Flask never saw it)?"""
    return test_client.application.wsgi_app.answered[-1]


def same_answer(fast, slow) -> None:
    """The two answers (this app's, then the Flask-only twin's) carry the same status, body and headers."""
    assert fast.status == slow.status
    assert fast.get_data() == slow.get_data()
    strip = lambda r: sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE)  # noqa: E731
    assert strip(fast) == strip(slow)
    assert fast.headers["X-Request-ID"]


def key_failures() -> int:
    return _db.session.scalar(
        select(func.count()).select_from(AuditEvent)
        .where(AuditEvent.action == "key.use", AuditEvent.outcome == "failure")
    )


def both(fast_client, slow_client, method: str, path: str, **kwargs):
    """One request to each app; asserts the dispatch answered this app's and Flask the twin's."""
    fast = fast_client.open(path, method=method, **kwargs)
    assert lane(fast_client), f"the dispatch passed {method} {path} on to Flask"
    slow = slow_client.open(path, method=method, **kwargs)
    assert not lane(slow_client)
    return fast, slow


def test_healthz_is_answered_by_the_dispatch_as_flask_answers_it(client, flask_only):
    fast, slow = both(client, flask_only, "GET", "/healthz")
    same_answer(fast, slow)
    assert fast.status_code == 200 and fast.json == {"status": "ok"}
    # Other methods are Flask's to refuse, as before.
    assert client.post("/healthz").status_code == 405 and not lane(client)


@pytest.mark.parametrize("form", ["raw", "basic", "x-api-key"])
def test_api_me_with_a_key_is_answered_by_the_lane_as_flask_answers_it(client, flask_only, services, alice, form):
    headers = key_headers(form, *make_key(services, alice, scopes=["photos:read"]))
    fast, slow = both(client, flask_only, "GET", "/api/me", headers=headers)
    same_answer(fast, slow)
    assert fast.json["username"] == "alice" and fast.json["auth_method"] == "api_key"
    assert fast.json["scopes"] == ["photos:read"]
    assert fast.headers["Cache-Control"] == "no-store" and "Content-Security-Policy" in fast.headers


def test_api_me_with_a_session_cookie_is_answered_by_the_lane(client, flask_only, alice):
    assert login(flask_only, "alice").status_code == 200
    client.set_cookie(SESSION_COOKIE, flask_only.get_cookie(SESSION_COOKIE).value)
    fast, slow = both(client, flask_only, "GET", "/api/me")
    same_answer(fast, slow)
    assert fast.json["auth_method"] == "password"


def test_api_me_with_a_bearer_token_is_answered_by_the_lane(client, flask_only, services, alice):
    gallery, secret = make_client(services, first_party=True)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery, scope="openid profile")
    token = exchange(client, gallery, secret, code).json["access_token"]
    client.delete_cookie(SESSION_COOKIE)
    fast, slow = both(client, flask_only, "GET", "/api/me", headers={"Authorization": f"Bearer {token}"})
    same_answer(fast, slow)
    assert fast.json["auth_method"] == "oauth_token" and fast.json["client_id"] == gallery.client_id


@pytest.mark.parametrize("form", ["raw", "x-api-key"])
def test_forward_auth_that_passes_is_answered_by_the_lane(client, flask_only, services, alice, form):
    headers = {**key_headers(form, *make_key(services, alice)), **ORIGINAL}
    for path in ("/api/authz/forward-auth", "/api/authz/auth-request"):
        fast, slow = both(client, flask_only, "GET", path, headers=headers)
        same_answer(fast, slow)
        assert fast.headers["Remote-User"] == "alice" and fast.headers["Remote-Groups"] == "family,friends"
        assert fast.headers["Remote-Auth-Method"] == "api_key" and fast.headers["Remote-Name"] == "Alice Liddell"


def test_forward_auth_with_a_session_cookie_is_answered_by_the_lane(client, flask_only, alice):
    login(flask_only, "alice")
    client.set_cookie(SESSION_COOKIE, flask_only.get_cookie(SESSION_COOKIE).value)
    fast, slow = both(client, flask_only, "GET", "/api/authz/forward-auth", headers=ORIGINAL)
    same_answer(fast, slow)
    assert fast.headers["Remote-Auth-Method"] == "password"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),  # nobody: 401
        ({}, "?rd=https://photos.example/"),  # nobody, the proxy wants a redirect: 302 to the login page
        ({"X-API-Key": "pkid-20260101-000000000000000000000:" + "0" * 43}, ""),  # a bad key: 401
    ],
)
def test_forward_auth_refusals_are_answered_by_the_dispatch_as_by_flask(client, flask_only, headers, query):
    for path in ("/api/authz/forward-auth", "/api/authz/auth-request"):
        fast, slow = both(client, flask_only, "GET", path + query, headers={**headers, **ORIGINAL})
        same_answer(fast, slow)
        assert fast.status_code in (401, 302)


def test_forward_auth_for_every_method(settings, clock, services, alice):
    """POST, HEAD, OPTIONS…: the proxy forwards the original method; each gets the same check.
    A 302 for a forwarded POST is a 303 on both (one layer turns it)."""
    fast_app = create_app(settings, clock=clock)
    slow_app = create_app(settings.replace(fast_lane=False), clock=clock)
    fast_client, slow_client = Witness(fast_app), Witness(slow_app)
    fast_app.wsgi_app, slow_app.wsgi_app = fast_client, slow_client
    key = key_headers("x-api-key", *make_key(services, alice))
    for method in ("POST", "HEAD", "OPTIONS", "DELETE"):
        for headers, query in ((key, ""), ({}, ""), ({}, "?rd=1")):
            fast = fast_app.test_client().open("/api/authz/forward-auth" + query, method=method,
                                               headers={**headers, **ORIGINAL})
            slow = slow_app.test_client().open("/api/authz/forward-auth" + query, method=method,
                                               headers={**headers, **ORIGINAL})
            assert fast_client.answered[-1] and not slow_client.answered[-1]
            same_answer(fast, slow)
            if query and method in ("POST", "DELETE"):
                assert fast.status_code == 303
    for other in (fast_app, slow_app):
        with other.app_context():
            _db.engine.dispose()


def test_a_refused_key_is_answered_by_the_dispatch_and_counted_once(client, flask_only, services, alice):
    key_id, secret = make_key(services, alice)
    mistyped = {"X-API-Key": f"{key_id}:{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"}
    services.keys.revoke(services.keys.find(key_id), actor="test")
    revoked = key_headers("x-api-key", key_id, secret)
    before = key_failures()
    fast = client.get("/api/me", headers=revoked)
    assert lane(client)
    assert key_failures() == before + 1
    slow = flask_only.get("/api/me", headers=revoked)
    assert key_failures() == before + 2
    same_answer(fast, slow)
    assert fast.status_code == 401 and fast.json["error"] == "invalid_key"
    # A mistyped secret (its checksum fails) is refused the same way on both.
    assert client.get("/api/me", headers=mistyped).json == flask_only.get("/api/me", headers=mistyped).json


@pytest.fixture
def service_client(services):
    """A confidential client_credentials client: (client_id, secret)."""
    registered, secret = make_client(services, "Indexer", redirect_uris=(), scope="photos:read",
                                     grants=("client_credentials",), introspect=True)
    return registered.client_id, secret


def test_client_credentials_tokens_come_from_the_lane_as_from_flask(client, flask_only, service_client):
    client_id, secret = service_client
    auth = {"Authorization": basic_auth(client_id, secret)}
    form = {"grant_type": "client_credentials"}
    fast, slow = both(client, flask_only, "POST", "/oauth/token", data=form, headers=auth)
    assert fast.status_code == slow.status_code == 200
    assert fast.json["access_token"] != slow.json["access_token"]
    assert {k: v for k, v in fast.json.items() if k != "access_token"} == {
        k: v for k, v in slow.json.items() if k != "access_token"}
    for name in ("Cache-Control", "Pragma", "Content-Type"):
        assert fast.headers[name] == slow.headers[name]
    posted = client.post("/oauth/token", data={**form, "client_id": client_id, "client_secret": secret})
    assert lane(client) and posted.status_code == 200
    # The lane's token is a real one: Flask finds it active too.
    assert flask_only.post("/oauth/introspect", data={"token": fast.json["access_token"]}, headers=auth).json["active"]


def test_introspection_comes_from_the_lane_as_from_flask(client, flask_only, services, alice, service_client):
    client_id, secret = service_client
    auth = {"Authorization": basic_auth(client_id, secret)}
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=auth).json["access_token"]
    key_id, key_secret = make_key(services, alice)
    for value in (token, f"{key_id}:{key_secret}", "a+b%20c%ZZ &x=é", "not-a-token"):
        fast, slow = both(client, flask_only, "POST", "/oauth/introspect", data={"token": value}, headers=auth)
        same_answer(fast, slow)
    assert fast.json == {"active": False}


def test_oauth_errors_are_answered_by_the_lane_as_by_flask_and_counted_once(client, flask_only, service_client, db):
    """Once the lane has run an endpoint it answers, errors included: nothing is run twice."""
    client_id, secret = service_client
    wrong = {"Authorization": basic_auth(client_id, "not-the-secret")}
    for path, form in (("/oauth/token", {"grant_type": "client_credentials"}), ("/oauth/introspect", {"token": "x"})):
        before = failures(db, client_id)
        fast = client.post(path, data=form, headers=wrong)
        assert lane(client) and failures(db, client_id) == before + 1
        slow = flask_only.post(path, data=form, headers=wrong)
        assert fast.status_code == slow.status_code == 401
        assert fast.json == slow.json and fast.json["error"] == "invalid_client"
        assert fast.headers["WWW-Authenticate"] == slow.headers["WWW-Authenticate"]
    # 60 failures a minute per address, shared by both apps (one database): 2 + 2 spent above,
    # 56 more fill the window; the next failure is refused.
    for _ in range(56):
        assert client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=wrong).status_code == 401
    refused = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=wrong)
    assert refused.status_code == 429 and refused.json["error"] == "slow_down" and lane(client)
    assert refused.headers["Retry-After"]
    # The client that authenticates is never refused for what others did from its address.
    good = {"Authorization": basic_auth(client_id, secret)}
    assert client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=good).status_code == 200
    assert lane(client)


def failures(db, client_id: str) -> int:
    from authserver.audit.models import AuditEvent

    return len(db.session.scalars(db.select(AuditEvent.id).where(
        AuditEvent.action == "client.auth_failed", AuditEvent.actor == f"client:{client_id}")).all())


@pytest.mark.parametrize("lane_on", [True, False], ids=["lane", "flask"])
def test_a_replayed_code_and_a_reused_refresh_token_are_audited_once(
        app, settings, clock, services, alice, db, lane_on):
    """A replay is one audit row and one warning, with the dispatch on and off (issue 20)."""
    from authserver.audit.models import AuditEvent

    http = client_for(app if lane_on else None, settings, clock)
    gallery, secret = make_client(services)
    logged_in(http, "alice")
    code, _, _ = get_code(http, gallery)
    first = exchange(http, gallery, secret, code)
    assert first.status_code == 200
    assert exchange(http, gallery, secret, code).json["error"] == "invalid_grant"
    other_code, _, _ = get_code(http, gallery)
    fresh = exchange(http, gallery, secret, other_code).json
    refresh = {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]}
    as_gallery = {"Authorization": basic_auth(gallery.client_id, secret)}
    assert http.post("/oauth/token", data=refresh, headers=as_gallery).status_code == 200
    assert http.post("/oauth/token", data=refresh, headers=as_gallery).status_code == 400
    db.session.expire_all()
    rows = db.session.scalars(db.select(AuditEvent.action).where(
        AuditEvent.action.in_(["oauth.code_replayed", "oauth.refresh_reused"]))).all()
    assert sorted(rows) == ["oauth.code_replayed", "oauth.refresh_reused"]


def client_for(app, settings, clock):
    if app is not None:
        return app.test_client()
    other = create_app(settings.replace(fast_lane=False), clock=clock)
    other.config["TESTING"] = True
    return other.test_client()


def test_odd_requests_are_answered_by_the_dispatch_as_by_flask(client, flask_only, services, alice, service_client):
    """A body where none belongs, JSON where a form belongs, a body past the limit (announced or
    chunked), a form in another encoding: the dispatch answers each as Flask does."""
    headers = key_headers("x-api-key", *make_key(services, alice))
    fast, slow = both(client, flask_only, "GET", "/api/me", headers=headers, data=b"x" * 10)
    same_answer(fast, slow)
    assert fast.status_code == 200
    client_id, secret = service_client
    auth = {"Authorization": basic_auth(client_id, secret)}
    fast, slow = both(client, flask_only, "POST", "/oauth/token", json={"grant_type": "client_credentials"},
                      headers=auth)
    assert fast.status_code == slow.status_code == 400 and fast.json == slow.json
    big = "x" * (1024 * 1024 + 1)
    for path in ("/oauth/token", "/oauth/introspect", "/api/me"):
        method = "GET" if path == "/api/me" else "POST"
        fast, slow = both(client, flask_only, method, path, data=big, headers=auth)
        same_answer(fast, slow)
        assert fast.status_code == 413 and fast.json["error"] == "request_too_large"

    chunked = {**auth, "Transfer-Encoding": "chunked"}
    for body, status in ((b"grant_type=client_credentials&pad=" + b"x" * (1024 * 1024), 413),
                         (b"grant_type=client_credentials", 200)):
        answers = []
        for http in (client, flask_only):
            answers.append(http.post("/oauth/token", content_type="application/x-www-form-urlencoded", headers=chunked,
                                     environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}))
        assert lane(client) and not lane(flask_only)
        assert answers[0].status_code == answers[1].status_code == status
    fast, slow = both(client, flask_only, "POST", "/oauth/token", headers=auth,
                      data={"grant_type": "client_credentials"}, content_type="multipart/form-data")
    assert fast.status_code == slow.status_code == 200


def test_the_code_and_refresh_grants_are_answered_by_the_dispatch(client, flask_only, services, alice):
    gallery, secret = make_client(services)
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    tokens = exchange(client, gallery, secret, code)
    assert lane(client) and tokens.status_code == 200 and tokens.json["id_token"]
    refreshed = client.post("/oauth/token", headers={"Authorization": basic_auth(gallery.client_id, secret)},
                            data={"grant_type": "refresh_token", "refresh_token": tokens.json["refresh_token"]})
    assert lane(client) and refreshed.status_code == 200
    fast, slow = both(client, flask_only, "POST", "/oauth/token",
                      data={"grant_type": "authorization_code", "code": code},
                      headers={"Authorization": basic_auth(gallery.client_id, secret)})
    same_answer(fast, slow)
    assert fast.json["error"] == "invalid_grant"


def test_a_database_outage_met_by_the_dispatch_is_answered_503_without_a_second_try(
        client, services, alice, monkeypatch, json_logs):
    from sqlalchemy.exc import OperationalError

    import keyvault.service

    headers = key_headers("x-api-key", *make_key(services, alice))
    attempts = []

    def unreachable(statement, params):
        attempts.append(statement)
        raise OperationalError("SELECT", None, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(keyvault.service, "read_one", unreachable)
    response = client.get("/api/me", headers=headers)
    assert lane(client)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["error"] == "temporarily_unavailable"
    assert len(attempts) == 1
    errors = [e for e in json_logs.entries() if e["logger"] == "authserver.errors"]
    assert [e["message"] for e in errors] == ["database unavailable"]


def test_dispatch_answers_are_logged_and_counted(client, services, alice, json_logs):
    key_id, secret = make_key(services, alice)
    headers = {**key_headers("x-api-key", key_id, secret), "X-Request-ID": "lane-request-0001"}
    response = client.get("/api/me", headers=headers)
    assert lane(client) and response.headers["X-Request-ID"] == "lane-request-0001"
    lines = [e for e in json_logs.entries() if e["logger"] == "authserver.access"]
    assert lines[-1]["request_id"] == "lane-request-0001"
    assert (lines[-1]["path"], lines[-1]["method"], lines[-1]["status"]) == ("/api/me", "GET", 200)
    assert secret not in json_logs.text()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'authserver_http_requests_total{endpoint="/api/me",method="GET",status="200"}' in metrics


def test_the_fast_lane_setting(tmp_path):
    base = {"AUTHSERVER_INSTANCE_PATH": str(tmp_path)}
    assert Settings.from_env(base).fast_lane is True
    assert Settings.from_env({**base, "AUTHSERVER_FAST_LANE": "off"}).fast_lane is False
    with pytest.raises(SettingsError, match="AUTHSERVER_FAST_LANE"):
        Settings.from_env({**base, "AUTHSERVER_FAST_LANE": "maybe"})
