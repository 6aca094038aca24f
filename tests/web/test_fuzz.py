"""Malformed bodies against every write route the app has (found in `app.url_map`, so routes added
later are covered too): never a 5xx, and always a JSON error under the JSON prefixes."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from werkzeug.routing import (
    AnyConverter,
    FloatConverter,
    IntegerConverter,
    PathConverter,
    UUIDConverter,
)

from authserver.cookies import SESSION_COOKIE
from authserver.errors import is_json_path
from tests.helpers.factories import DEFAULT_PASSWORD, make_user

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ONE_MIB = 1024 * 1024

# Field names the app's JSON bodies use; each case sends them all with one kind of wrong value.
FIELDS = [
    "username", "password", "totp_code", "code", "recovery_code", "client_id", "client_secret",
    "redirect_uri", "redirect_uris", "url", "state", "nonce", "handle", "transaction", "name", "email",
    "scope", "scopes", "expires_in", "expires_in_days", "grace", "grace_seconds", "groups", "is_admin",
    "admin", "disabled", "allowed_ips", "allowed_cidrs", "key_id", "secret", "token", "user", "id",
    "public", "trusted", "grant_types", "claims",
]


def every_field(value) -> bytes:
    return json.dumps({name: value for name in FIELDS}).encode()


BODIES = [
    ("malformed json", b'{"username": "alice", ', "application/json"),
    ("bad utf-8", b'{"username": "\xff\xfe\xfa", "password": "\xc3\x28"}', "application/json"),
    ("utf-16 json", json.dumps({"username": "alice"}).encode("utf-16"), "application/json"),
    ("json array", b'[{"username": "alice"}, 1, null]', "application/json"),
    ("json string", b'"alice"', "application/json"),
    ("json null", b"null", "application/json"),
    ("empty json", b"", "application/json"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("numbers", every_field(2**70), "application/json"),
    ("floats", b"{" + b", ".join(f'"{n}": 1e999'.encode() for n in FIELDS) + b"}", "application/json"),
    ("booleans", every_field(True), "application/json"),
    ("nulls", every_field(None), "application/json"),
    ("objects", every_field({"$ne": ""}), "application/json"),
    ("lists", every_field(["a", 1, None, {}]), "application/json"),
    ("nul bytes", every_field("a\u0000b"), "application/json"),
    ("long strings", every_field("x" * 20000), "application/json"),
    ("lone surrogate", b"{" + b", ".join(f'"{n}": "\\ud800"'.encode() for n in FIELDS) + b"}", "application/json"),
    ("form", b"username=alice&password=secret&code=123456&csrf_token=nope", "application/x-www-form-urlencoded"),
    ("form bad utf-8", b"username=%ff%fe&password=%c3%28", "application/x-www-form-urlencoded"),
    ("multipart", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n",
     "multipart/form-data; boundary=x"),
    ("plain text", b"username=alice", "text/plain"),
    ("no content type", b'{"username": "alice"}', None),
]
TOO_LARGE = ("over 1 MiB", b'{"username": "' + b"x" * ONE_MIB + b'"}', "application/json")

# URL parts: ids that do not exist, then ids that no database column can hold.
JUNK_URL_VALUES = [
    {IntegerConverter: 987654, FloatConverter: 1.5, UUIDConverter: uuid.uuid4(), PathConverter: "no/such/thing",
     None: "pkid-20260101-000000000000000000000"},
    {IntegerConverter: 2**63 - 1, FloatConverter: 1e308, UUIDConverter: uuid.UUID(int=0),
     PathConverter: "../../etc/passwd", None: "x\u0000'\"<>%ff\u00e9" + "y" * 300},
]


def write_routes(app) -> list[tuple[str, str]]:
    """Every (method, concrete URL) that accepts a write, with junk in its URL parts."""
    adapter = app.url_map.bind("localhost")
    routes = []
    for rule in app.url_map.iter_rules():
        methods = sorted(set(rule.methods or ()) & set(WRITE_METHODS))
        if not methods or rule.endpoint == "static":
            continue
        for junk in JUNK_URL_VALUES:
            values = {}
            for name, converter in rule._converters.items():
                if isinstance(converter, AnyConverter):
                    values[name] = min(converter.items)
                else:
                    kind = next((k for k in junk if k and isinstance(converter, k)), None)
                    values[name] = junk[kind]
            url = adapter.build(rule.endpoint, values, method=methods[0])
            routes.extend((method, url) for method in methods)
            if not rule.arguments:
                break
    return routes


def check(response, method: str, url: str, case: str, problems: list[str]) -> None:
    where = f"{method} {url} [{case}] -> {response.status_code}"
    if response.status_code >= 500:
        problems.append(f"{where}: {response.get_data(as_text=True)[:200]}")
    elif response.status_code >= 400 and is_json_path(url):
        body = response.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            problems.append(f"{where}: not a JSON error: {response.get_data(as_text=True)[:200]}")
    text = response.get_data(as_text=True)
    if "Traceback" in text or 'File "' in text:
        problems.append(f"{where}: stack trace in the body")


@pytest.fixture
def session_cookie(services):
    """Opens a fresh admin session per call: a fuzzed logout must not disarm the next request."""
    admin = make_user(services, "fuzzadmin", admin=True)

    def fresh() -> str:
        return services.sessions.open(admin, auth_method="password", amr=["pwd"]).cookie_value

    return fresh


def test_the_app_has_write_routes_to_fuzz(app):
    urls = {url for _, url in write_routes(app)}
    assert {"/login", "/logout", "/api/session/login", "/api/session/logout"} <= urls


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "session"])
def test_malformed_bodies_never_cause_a_5xx(app, client, session_cookie, logged_in):
    problems: list[str] = []
    for method, url in write_routes(app):
        for case, body, content_type in BODIES:
            client.delete_cookie(SESSION_COOKIE)
            if logged_in:
                client.set_cookie(SESSION_COOKIE, session_cookie())
            headers = {"Content-Type": content_type} if content_type else {}
            response = client.open(url, method=method, data=body, headers=headers)
            check(response, method, url, case, problems)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "session"])
def test_bodies_over_one_mib_are_413_everywhere(app, client, session_cookie, logged_in):
    case, body, content_type = TOO_LARGE
    problems: list[str] = []
    for method, url in write_routes(app):
        client.delete_cookie(SESSION_COOKIE)
        if logged_in:
            client.set_cookie(SESSION_COOKIE, session_cookie())
        response = client.open(url, method=method, data=body, headers={"Content-Type": content_type})
        check(response, method, url, case, problems)
        if response.status_code != 413:
            problems.append(f"{method} {url} [{case}] -> {response.status_code}, expected 413")
    assert not problems, "\n".join(problems)


def test_body_of_unknown_length_over_one_mib_is_refused(client):
    """A chunked upload announces no length: the limit applies while it is read."""
    body = b'{"username": "' + b"x" * (ONE_MIB + 1) + b'", "password": "x"}'
    response = client.post(
        "/api/session/login",
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.json["error"] == "request_too_large"


def test_body_of_unknown_length_within_the_limit_is_read_whole(client, services):
    make_user(services, "alice")
    body = json.dumps({"username": "alice", "password": DEFAULT_PASSWORD}).encode()
    response = client.post(
        "/api/session/login",
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    assert response.status_code == 200 and response.json["username"] == "alice"
