"""One error layer: JSON under /api/, HTML for browsers, no stack traces, request ids in logs."""

from __future__ import annotations

import pytest
from flask import abort


@pytest.fixture
def failing_app(app):
    """The app with test-only routes that fail the way a bug would."""

    def boom():
        raise RuntimeError("internal detail: table users column secret_hmac")

    app.add_url_rule("/api/test-only/boom", "test_boom_api", boom, methods=["GET", "POST"])
    app.add_url_rule("/test-only/boom", "test_boom_page", boom)
    app.add_url_rule("/api/test-only/abort-503", "test_abort", lambda: abort(503))
    return app


def test_unknown_api_path_is_404_json(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json == {"error": "not_found",
                             "error_description": "There is nothing at this address; check the URL."}


def test_unknown_page_is_404_html(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "404" in response.text and "Traceback" not in response.text


def test_wrong_method_on_api_is_405_json_with_allow(client):
    response = client.put("/api/me", json={})
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_wrong_method_on_a_page_is_405_html(client):
    response = client.put("/login")
    assert response.status_code == 405
    assert response.mimetype == "text/html"


def test_programs_asking_for_json_get_json_errors_anywhere(client):
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_unexpected_exception_is_a_bare_500_with_the_request_id_and_is_logged(failing_app, client, json_logs):
    response = client.post("/api/test-only/boom", json={}, headers={"X-Request-ID": "req-0123456789"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-0123456789"
    assert response.json == {
        "error": "server_error",
        "error_description": "Something went wrong on our side (request req-0123456789).",
    }
    assert "Traceback" not in response.text and "internal detail" not in response.text

    [entry] = [e for e in json_logs.entries() if e["logger"] == "authserver.errors"]
    assert entry["level"] == "ERROR"
    assert entry["request_id"] == "req-0123456789"
    assert entry["path"] == "/api/test-only/boom"
    assert "RuntimeError: internal detail" in entry["exception"]


def test_unexpected_exception_on_a_page_is_an_html_500(failing_app, client):
    response = client.get("/test-only/boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert response.headers["X-Request-ID"] in response.text
    assert "Traceback" not in response.text and "internal detail" not in response.text


def test_a_generated_request_id_is_returned_when_the_caller_sends_none_or_junk(failing_app, client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz", headers={"X-Request-ID": "bad id\u00e9 with spaces"}).headers["X-Request-ID"]
    assert len(first) == 16 and len(second) == 16 and first != second


def test_other_http_statuses_keep_the_json_shape(failing_app, client):
    response = client.get("/api/test-only/abort-503")
    assert response.status_code == 503
    assert set(response.json) == {"error", "error_description"}


@pytest.mark.parametrize("number", [2**63, 10**40])
def test_numbers_the_database_cannot_hold_are_a_400_not_a_500(app, client, number):
    from authserver.accounts.models import User
    from authserver.extensions import db

    def lookup():
        db.session.get(User, int(number))
        return {"found": False}

    app.add_url_rule("/api/test-only/lookup", "test_lookup", lookup)
    response = client.get("/api/test-only/lookup")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json["error"] == "invalid_request"


def test_url_integers_beyond_64_bits_are_simply_not_found(app, client):
    app.add_url_rule("/api/test-only/items/<int:item_id>", "test_item", lambda item_id: {"id": item_id})
    assert client.get(f"/api/test-only/items/{2**63 - 1}").json == {"id": 2**63 - 1}
    assert client.get(f"/api/test-only/items/{2**63}").status_code == 404


def test_nul_bytes_in_a_lookup_are_a_400_not_a_500(app, client):
    from authserver.accounts.models import User
    from authserver.accounts.service import normalise_username
    from authserver.extensions import db

    def lookup(name):
        db.session.scalar(db.select(User).where(User.username_key == normalise_username(name)))
        return {"found": False}

    app.add_url_rule("/api/test-only/users/<name>", "test_user_lookup", lookup)
    response = client.get("/api/test-only/users/a%00b")
    assert response.status_code in (200, 400), response.text
