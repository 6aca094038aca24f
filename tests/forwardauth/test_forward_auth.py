"""The forward-auth endpoint through the test client: rules, trusted proxies, redirects."""

import json
from ipaddress import ip_network
from urllib.parse import parse_qs, urlsplit

import pytest

from authserver import create_app
from authserver.access_rules import load_rules, parse_host_patterns, parse_networks
from authserver.cookies import SESSION_COOKIE
from authserver.extensions import db as _db
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, key_headers, login, make_key, make_user
from tests.helpers.settings import make_settings

ENDPOINT = "/api/authz/forward-auth"
NGINX_ENDPOINT = "/api/authz/auth-request"
RULES = [
    {"host": "photos.test", "path": "/share", "policy": "bypass"},
    {"host": "photos.test", "path": "/admin", "policy": "two_factor"},
    {"host": "photos.test", "path": "/family", "policy": "one_factor", "groups": ["family", "friends"]},
    {"host": "photos.test", "path": "/upload", "policy": "one_factor", "api_keys": False},
    {"host": ".secret.test", "policy": "deny"},
]


@pytest.fixture
def settings(backend, database_urls, tmp_path):
    return make_settings(
        tmp_path,
        database_urls[backend],
        # The proxies (and the test client) talk from loopback; only then are their headers believed.
        trusted_proxies=parse_networks("127.0.0.1/32,::1/128"),
        issuer="https://auth.photos.test",
        forward_auth_rules=load_rules(json.dumps(RULES), "one_factor", base=tmp_path),
        forward_auth_domains=parse_host_patterns(".photos.test"),
    )


@pytest.fixture
def client_with(settings, clock):
    """A test client of an app built with some settings changed, on the same database."""
    apps = []

    def build(**changes):
        other = create_app(settings.replace(**changes), clock=clock)
        other.config["TESTING"] = True
        apps.append(other)
        return other.test_client()

    yield build
    for other in apps:
        with other.app_context():
            _db.engine.dispose()


def ask(client, url="https://photos.test/album/1", *, endpoint=ENDPOINT, method="GET", peer=None, **headers):
    headers = {"X-Original-URL": url, **headers} if url else headers
    environ = {"REMOTE_ADDR": peer} if peer else {}
    return client.open(endpoint, method=method, headers=headers, environ_base=environ)


def use_session(client, services, user, *, auth_method="password", amr=("pwd",), key_id=None):
    opened = services.sessions.open(user, auth_method=auth_method, amr=list(amr), key_id=key_id)
    # The issuer is https: the cookie carries the __Host- prefix (ASVS 3.3.1).
    client.set_cookie(services.settings.cookie_name(SESSION_COOKIE, shared_domain=True), opened.cookie_value)
    return opened


def test_no_credentials_is_401_json_without_remote_headers(client):
    response = ask(client)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert "Remote-User" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_session_cookie_passes_with_remote_headers(client, services):
    make_user(services, "alice", email="alice@photos.test", name="Alice Liddell", groups=["family", "admins"])
    assert login(client, "alice").status_code == 200
    response = ask(client)
    assert response.status_code == 200
    assert response.headers["Remote-User"] == "alice"
    assert response.headers["Remote-Email"] == "alice@photos.test"
    assert response.headers["Remote-Name"] == "Alice Liddell"
    assert response.headers["Remote-Groups"] == "family,admins"
    assert response.headers["Remote-Auth-Method"] == "password"


def test_names_outside_latin1_reach_the_proxy_as_utf8(client, services):
    user = make_user(services, "yamada", name="山田 太郎")
    use_session(client, services, user)
    response = ask(client)
    assert response.headers["Remote-Name"].encode("latin-1").decode("utf-8") == "山田 太郎"


def test_logout_ends_forward_auth_access(client, services):
    make_user(services, "alice")
    login(client, "alice")
    assert ask(client).status_code == 200
    assert client.post("/api/session/logout", json={}).status_code == 200
    assert ask(client).status_code == 401


def test_stale_or_forged_cookie_is_401(client, services):
    client.set_cookie(SESSION_COOKIE, "forged-value")
    assert ask(client).status_code == 401


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_forwarded_method_is_checked(client, services, method):
    assert ask(client, method=method).status_code == 401
    user = make_user(services)
    use_session(client, services, user)
    response = ask(client, method=method)
    assert response.status_code == 200
    assert response.headers["Remote-User"] == user.username


def test_session_cookie_needs_no_csrf_headers_for_forwarded_writes(client, services):
    use_session(client, services, make_user(services))
    response = ask(client, method="POST", Origin="https://elsewhere.test", **{"Content-Type": "text/plain"})
    assert response.status_code == 200


def test_bypass_passes_without_credentials_and_names_nobody(client, services):
    response = ask(client, "https://photos.test/share/abc")
    assert response.status_code == 200
    assert response.headers["Remote-User"] == "" and response.headers["Remote-Auth-Method"] == ""


def test_deny_refuses_everyone(client, services):
    assert ask(client, "https://vault.secret.test/").status_code == 403
    use_session(client, services, make_user(services))
    response = ask(client, "https://vault.secret.test/", rd="1")
    assert response.status_code == 403
    assert response.json["error"] == "forbidden"


def test_password_only_session_fails_two_factor(client, services):
    use_session(client, services, make_user(services))
    assert ask(client).status_code == 200
    response = ask(client, "https://photos.test/admin/users")
    assert response.status_code == 403
    assert "two-factor" in response.json["error_description"]


def test_password_only_session_is_sent_to_log_in_again_by_a_redirecting_proxy(client, services):
    use_session(client, services, make_user(services))
    response = client.get(ENDPOINT + "?rd", headers={"X-Original-URL": "https://photos.test/admin"})
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["https://photos.test/admin"]


def test_totp_session_passes_two_factor(client, services):
    use_session(client, services, make_user(services), auth_method="password+totp", amr=("pwd", "otp", "mfa"))
    response = ask(client, "https://photos.test/admin")
    assert response.status_code == 200
    assert response.headers["Remote-Auth-Method"] == "password+totp"


@pytest.mark.parametrize("uri", ["/%61dmin", "/x/../admin", "//admin", "/admin/", "/./admin/users?x=1"])
def test_path_tricks_still_meet_the_rule(client, services, uri):
    use_session(client, services, make_user(services))
    assert ask(client, "https://photos.test" + uri).status_code == 403


def test_groups_rule_needs_one_of_the_groups(client, services):
    outsider = make_user(services, "outsider", groups=["neighbours"])
    use_session(client, services, outsider)
    response = ask(client, "https://photos.test/family/2024")
    assert response.status_code == 403
    assert "group" in response.json["error_description"]
    client.delete_cookie(SESSION_COOKIE)
    use_session(client, services, make_user(services, "cousin", groups=["friends"]))
    assert ask(client, "https://photos.test/family/2024").status_code == 200


def test_api_keys_false_refuses_key_logins_only(client, services):
    owner = make_user(services, "uploader")
    # A session opened by a JSON login with an API key carries auth_method api_key.
    use_session(client, services, owner, auth_method="api_key", amr=(), key_id="pkid-20260101-abcdefghijklmnopqrstu")
    assert ask(client, "https://photos.test/album").headers["Remote-Auth-Method"] == "api_key"
    response = ask(client, "https://photos.test/upload/new")
    assert response.status_code == 403
    assert "API keys are not accepted" in response.json["error_description"]
    client.delete_cookie(SESSION_COOKIE)
    use_session(client, services, owner)
    assert ask(client, "https://photos.test/upload/new").status_code == 200


def test_rd_asks_for_a_redirect_to_login_with_the_original_url(client):
    original = "https://photos.test/album/7?sort=date&page=2"
    response = client.get(ENDPOINT + "?rd=1", headers={"X-Original-URL": original})
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "auth.photos.test", "/login")
    assert parse_qs(location.query) == {"next": [original]}


def test_nginx_flavour_expresses_the_redirect_as_401_with_location(client):
    response = client.get(NGINX_ENDPOINT + "?rd", headers={"X-Original-URL": "https://photos.test/a"})
    assert response.status_code == 401
    assert response.headers["Location"] == "https://auth.photos.test/login?next=https%3A%2F%2Fphotos.test%2Fa"
    assert ask(client, endpoint=NGINX_ENDPOINT).status_code == 401
    assert "Location" not in ask(client, endpoint=NGINX_ENDPOINT).headers


def test_forwarded_proto_host_uri_give_the_original_url(client, services):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "photos.test:8443", "X-Forwarded-Uri": "/admin/x?y=1"}
    response = client.get(ENDPOINT + "?rd", headers=headers)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == ["https://photos.test:8443/admin/x?y=1"]
    use_session(client, services, make_user(services))
    assert client.get(ENDPOINT, headers=headers).status_code == 403  # the /admin rule applied


def test_browsers_mode_redirects_html_requests_only(client_with):
    client = client_with(forward_auth_redirect="browsers")
    html = ask(client, Accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert html.status_code == 302
    assert ask(client, Accept="application/json").status_code == 401
    assert ask(client).status_code == 401


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(client, services):
    # A direct caller claims a bypass URL: ignored, the default policy applies.
    assert ask(client, "https://photos.test/share/x", peer="203.0.113.9").status_code == 401
    # ...and it cannot plant a `next` for the login page.
    response = client.get(ENDPOINT + "?rd", headers={"X-Original-URL": "https://photos.test/x"},
                          environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.headers["Location"] == "https://auth.photos.test/login"
    # A deny rule it claims to be under does not stop a logged-in user either: it is just ignored.
    use_session(client, services, make_user(services))
    assert ask(client, "https://vault.secret.test/", peer="203.0.113.9").status_code == 200


def test_a_configured_proxy_network_is_trusted(client_with):
    client = client_with(trusted_proxies=(ip_network("10.0.0.0/8"),))
    assert ask(client, "https://photos.test/share/x", peer="10.20.30.40").status_code == 200
    assert ask(client, "https://photos.test/share/x", peer="127.0.0.1").status_code == 401


def test_next_only_to_forward_auth_domains(client):
    response = client.get(ENDPOINT + "?rd", headers={"X-Original-URL": "https://evil.test/phish"})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://auth.photos.test/login"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Original-URL": "javascript:alert(1)"},
        {"X-Original-URL": "https://photos.test@evil.test/"},
        {"X-Original-URL": "https://photos.test/a b"},
        {"X-Original-URL": "https://photos.test:99999/"},
        {"X-Original-URL": "https://" + "a" * 9000},
        {"X-Forwarded-Host": "photos.test"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "photos.test, evil.test"},
        {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "photos.test"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "photos.test", "X-Forwarded-Uri": "admin"},
    ],
)
def test_malformed_forwarded_headers_are_a_clear_400(client, headers):
    response = client.get(ENDPOINT, headers=headers)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"




@pytest.mark.parametrize(
    "target,expected",
    [
        ("https://photos.test/album/7?x=1", "https://photos.test/album/7?x=1"),
        ("https://upload.photos.test/", "https://upload.photos.test/"),
        ("https://evil.test/", "/account"),
        ("https://photos.test@evil.test/", "/account"),
        ("https://photos.test.evil.test/", "/account"),
        ("/account", "/account"),
    ],
)
def test_login_page_sends_back_to_forward_auth_domains_only(client, services, target, expected):
    make_user(services, "bob")
    page = client.get("/login", query_string={"next": target})
    response = client.post("/login", data={"username": "bob", "password": DEFAULT_PASSWORD,
                                           "csrf_token": csrf_token(page.text), "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == expected


@pytest.fixture
def statements(app):
    """The SQL statements the app runs while the test watches: the ORM's and Core's (engine
    events) and the hot path's (`hotpath.observed`)."""
    from sqlalchemy import event

    from authserver import hotpath

    seen: list[str] = []

    def note(statement: str) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    def record(conn, cursor, statement, parameters, context, executemany):
        note(statement)

    engine = _db.engine
    event.listen(engine, "before_cursor_execute", record)
    with hotpath.observed(note):
        yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_check_is_one_read_and_no_write(client, services, statements):
    use_session(client, services, make_user(services))
    assert ask(client).status_code == 200  # the first request of a worker may warm up; measure the next ones
    statements.clear()
    for _ in range(3):
        assert ask(client).status_code == 200
    assert statements == ["SELECT"] * 3


def test_bypass_reads_nothing(client, services, statements):
    use_session(client, services, make_user(services))
    statements.clear()
    assert ask(client, "https://photos.test/share/x").status_code == 200
    assert statements == []


@pytest.mark.parametrize("form", ["raw", "basic", "x-api-key"])
def test_api_keys_in_every_header_form_pass(client, services, form):
    owner = make_user(services, "uploader", groups=["photos"])
    key_id, secret = make_key(services, owner, scopes=["photos:read"])
    headers = key_headers(form, key_id, secret)
    response = ask(client, **headers)
    assert response.status_code == 200
    assert response.headers["Remote-User"] == "uploader"
    assert response.headers["Remote-Auth-Method"] == "api_key"
    assert response.headers["Remote-Groups"] == "photos"
    assert ask(client, "https://photos.test/admin", **headers).status_code == 200
    assert ask(client, "https://photos.test/upload", **headers).status_code == 403  # rule says api_keys: false


def test_wrong_or_revoked_keys_are_401(client, services):
    owner = make_user(services)
    key_id, secret = make_key(services, owner)
    _other, other_secret = make_key(services, owner)
    response = ask(client, **{"X-API-Key": f"{key_id}:{other_secret}"})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_key"
    assert "Remote-User" not in response.headers
    assert ask(client, **{"X-API-Key": f"{key_id}:{secret}"}).status_code == 200
    services.keys.revoke(services.keys.find(key_id), actor="test")
    assert ask(client, **{"X-API-Key": f"{key_id}:{secret}"}).status_code == 401


@pytest.mark.parametrize(("server", "expected"), [
    ("Werkzeug/3.1", "jöe".encode().decode("latin-1")),  # PEP 3333: latin-1 text of the UTF-8 bytes
    ("Granian", "jöe"),  # Granian writes header text as UTF-8: the text itself
])
def test_non_ascii_identity_headers_reach_the_wire_as_utf8(client, services, server, expected):
    user = make_user(services, "jöe")
    headers = key_headers("x-api-key", *make_key(services, user))
    for path in ("/api/authz/forward-auth", "/api/authz/auth-request"):
        answer = client.get(path, headers={**headers, "X-Original-URL": "https://photos.test/"},
                            environ_overrides={"SERVER_SOFTWARE": server})
        assert answer.status_code == 200
        assert answer.headers["Remote-User"] == expected


@pytest.mark.parametrize("endpoint", [ENDPOINT, NGINX_ENDPOINT])
def test_bad_keys_past_the_address_limit_are_401_with_retry_after_never_429(client, services, endpoint):
    """nginx auth_request turns any status but 2xx, 401 and 403 into a 500 for the visitor."""
    services.throttle.rules["key:address"] = (3, 60)
    key_id, secret = make_key(services, make_user(services, "alice"))
    for _ in range(3):
        assert ask(client, endpoint=endpoint, **{"X-API-Key": f"{key_id}:wrong"}).status_code == 401
    refused = ask(client, endpoint=endpoint, **{"X-API-Key": f"{key_id}:wrong"})
    assert refused.status_code == 401 and refused.json["error"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["WWW-Authenticate"]
    assert ask(client, endpoint=endpoint, **{"X-API-Key": f"{key_id}:{secret}"}).status_code == 200  # a good key passes
