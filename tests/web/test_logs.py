"""Structured JSON logs: one object a line, the request id on each, never a secret."""

from __future__ import annotations

import json
import logging
import re

from authserver import logs
from authserver.cookies import SESSION_COOKIE
from authserver.layers import CURRENT_REQUEST, RequestInfo
from authserver.logs import JsonFormatter
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_user

PASSWORD = "Plum-Wizard-7731-never-logged"
WRONG = "Quince-Dragon-4420-also-never-logged"


def test_logins_never_write_the_password_to_the_logs(client, services, json_logs):
    make_user(services, "alice", password=PASSWORD)
    assert client.post("/api/session/login", json={"username": "alice", "password": WRONG}).status_code == 401
    assert client.post("/api/session/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    cookie = client.get_cookie(SESSION_COOKIE).value
    token = csrf_token(client.get("/login").text)
    for password, status in ((WRONG, 401), (PASSWORD, 303)):
        form = {"username": "alice", "password": password, "csrf_token": token}
        assert client.post("/login", data=form).status_code == status
    assert client.post("/api/session/login", data=f"username=alice&password={PASSWORD}",
                       content_type="application/x-www-form-urlencoded").status_code == 415

    text = json_logs.text()
    assert text, "the requests were logged"
    for secret in (PASSWORD, WRONG, cookie, token):
        assert secret not in text
    entries = json_logs.entries()
    requests_logged = [e for e in entries if e["logger"] == "authserver.access"]
    assert len(requests_logged) == 6
    assert all(len(e["request_id"]) == 16 and e["status"] and "duration_ms" in e for e in requests_logged)
    audit = [e["audit"] for e in entries if e["logger"] == "authserver.audit"]
    assert {"action": "login.failed", "actor": "user:alice", "target": "", "outcome": "failure"} in audit


def test_the_callers_request_id_is_logged_and_echoed(client, json_logs):
    response = client.get("/api/me", headers={"X-Request-ID": "proxy-id-42abc"})
    assert response.headers["X-Request-ID"] == "proxy-id-42abc"
    [entry] = [e for e in json_logs.entries() if e["logger"] == "authserver.access"]
    assert entry["request_id"] == "proxy-id-42abc"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/api/me", 401)


def test_query_strings_are_not_logged(client, json_logs):
    client.get("/login?next=/account&code=s3cr3t-code-value")
    assert "s3cr3t-code-value" not in json_logs.text()


def test_the_access_line_is_the_line_the_formatter_writes_for_its_record(client, json_logs):
    """The access line skips the logging machinery; its shape is the formatter's all the same."""
    client.get("/api/me", headers={"X-Request-ID": "shape-check-1234", "User-Agent": 'quote " \\ ü'})
    client.get('/odd/"path"/\\')
    lines = [e for e in json_logs.entries() if e["logger"] == "authserver.access"]
    assert [(e["path"], e["status"]) for e in lines] == [("/api/me", 401), ('/odd/"path"/\\', 404)]
    record = logging.LogRecord("authserver.access", logging.INFO, "", 0, "request", (), None)
    record.status, record.duration_ms = 401, lines[0]["duration_ms"]
    token = CURRENT_REQUEST.set(RequestInfo("shape-check-1234", "127.0.0.1", "", "GET", "/api/me"))
    try:
        expected = json.loads(JsonFormatter().format(record))
    finally:
        CURRENT_REQUEST.reset(token)
    assert list(lines[0]) == list(expected)
    assert {**lines[0], "time": ""} == {**expected, "time": ""}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", lines[0]["time"])


def test_no_access_line_above_info(client, json_logs):
    logging.getLogger("authserver").setLevel(logging.WARNING)
    client.get("/api/me")
    client.get("/healthz")
    assert not [e for e in json_logs.entries() if e["logger"] == "authserver.access"]


LINK_TOKEN = "DK-C43ijYvGzOowNwbRzksB-Ee1bfqWQ1lUj7qb79tw"


def test_a_mailed_links_token_is_not_logged(client, json_logs):
    """A reset, invitation or verification link carries a credential in its path: the access
    line (and every line of the request) names the route, not the token."""
    for path in (f"/password/reset/{LINK_TOKEN}", f"/invite/{LINK_TOKEN}", f"/email/verify/{LINK_TOKEN}",
                 f"/password/reset/{LINK_TOKEN}/more", f"/email/verify/{LINK_TOKEN[:10]}%0A{LINK_TOKEN[10:]}"):
        client.get(path)
    text = json_logs.text()
    assert LINK_TOKEN[:20] not in text and LINK_TOKEN[-20:] not in text
    paths = [e["path"] for e in json_logs.entries() if e["logger"] == "authserver.access"]
    assert paths == ["/password/reset/<token>", "/invite/<token>", "/email/verify/<token>",
                     "/password/reset/<token>", "/email/verify/<token>"]


def test_logged_paths_and_methods_are_bounded_and_readable(client, json_logs):
    client.get("/" + "a" * 20_000)
    client.get("/caf\u00e9/\u00fc")
    client.open("/healthz", method="X" * 5_000)
    paths = [(e["method"], e["path"]) for e in json_logs.entries() if e["logger"] == "authserver.access"]
    assert [len(p) for _, p in paths] == [2048, len("/café/ü"), len("/healthz")]
    assert paths[1][1] == "/café/ü"  # the UTF-8 the client sent, not each byte as a character
    assert len(paths[2][0]) == 32


def test_a_broken_log_stream_does_not_fail_the_request(client, json_logs):
    logs.HANDLER.stream.close()
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/me").status_code == 401
