"""Security headers on every response; HSTS and Secure cookies when the issuer is https."""

from __future__ import annotations

import pytest

from authserver import create_app
from authserver.extensions import db
from tests.helpers.database import empty_tables
from tests.helpers.factories import DEFAULT_PASSWORD, login, make_user
from tests.helpers.settings import make_settings

REQUESTS = [
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", None),
    ("GET", "/login", None),
    ("GET", "/", None),
    ("GET", "/static/style.css", None),
    ("GET", "/api/me", None),
    ("GET", "/no-such-page", None),
    ("PUT", "/api/me", None),
    ("POST", "/api/session/login", b"{not json"),
    ("POST", "/api/session/login", b"x" * (1024 * 1024 + 1)),
]


def assert_security_headers(response, *, https: bool) -> None:
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    if https:
        assert headers["Strict-Transport-Security"].startswith("max-age=")
    else:
        assert "Strict-Transport-Security" not in headers


@pytest.mark.parametrize("method,path,body", REQUESTS)
def test_every_response_carries_security_headers(client, method, path, body):
    response = client.open(path, method=method, data=body, content_type="application/json" if body else None)
    assert_security_headers(response, https=False)


def test_api_and_login_responses_are_not_cached(client):
    assert client.get("/api/me").headers["Cache-Control"] == "no-store"
    assert client.get("/login").headers["Cache-Control"] == "no-store"


@pytest.fixture
def https_app(backend, database_urls, tmp_path, clock):
    app = create_app(make_settings(tmp_path, database_urls[backend], issuer="https://auth.photos.example"), clock=clock)
    app.config["TESTING"] = True
    with app.app_context():
        yield app
        empty_tables()
        db.engine.dispose()


@pytest.mark.parametrize("method,path,body", REQUESTS)
def test_https_issuer_adds_hsts_everywhere(https_app, method, path, body):
    client = https_app.test_client()
    response = client.open(path, method=method, data=body, content_type="application/json" if body else None)
    assert_security_headers(response, https=True)


def test_https_issuer_makes_every_cookie_secure(https_app):
    services = https_app.extensions["authserver"]
    make_user(services, "alice")
    client = https_app.test_client()
    session_cookie = login(client, "alice").headers["Set-Cookie"]
    assert "Secure" in session_cookie and "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    form_cookie = client.get("/login").headers["Set-Cookie"]
    assert "Secure" in form_cookie and "HttpOnly" in form_cookie


def test_http_issuer_cookies_are_not_marked_secure(client, services):
    make_user(services, "alice")
    assert "Secure" not in login(client, "alice").headers["Set-Cookie"]


def test_cookie_riding_json_write_must_be_json(client, services):
    make_user(services, "alice")
    login(client, "alice")
    for body, content_type in [("logout", "text/plain"), ("a=b", "application/x-www-form-urlencoded"), (None, None)]:
        response = client.post("/api/session/logout", data=body, content_type=content_type)
        assert response.status_code == 415, (content_type, response.status_code)
        assert response.json["error"] == "unsupported_media_type"
    assert client.get("/api/me").status_code == 200  # none of them logged us out


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example", "null", "http://localhost:8080"])
def test_cookie_riding_json_write_from_a_foreign_origin_is_403(client, services, origin):
    make_user(services, "alice")
    login(client, "alice")
    response = client.post("/api/session/logout", json={}, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json["error"] == "cross_origin"
    assert client.get("/api/me").status_code == 200


def test_cookie_riding_json_write_from_our_own_origin_works(client, services):
    make_user(services, "alice")
    login(client, "alice", DEFAULT_PASSWORD)
    response = client.post("/api/session/logout", json={}, headers={"Origin": "http://localhost"})
    assert response.status_code == 200
    assert client.get("/api/me").status_code == 401
