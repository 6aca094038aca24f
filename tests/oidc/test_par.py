"""Pushed authorization requests (RFC 9126): the push, the authorization request by reference,
and the attacks on it (parameters changed in the front channel, a request_uri used twice, by
another client, too late, a pushed request that would not pass the authorization endpoint)."""

from __future__ import annotations

import json

import pytest
from joserfc import jws
from sqlalchemy import func, select

from authserver import create_app
from authserver.oidc.models import PushedRequest
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.html import form_action
from tests.helpers.oidc import (
    DEFAULT_CHALLENGE,
    REDIRECT,
    authorize_params,
    exchange,
    logged_in,
    query_of,
)

URN = "urn:ietf:params:oauth:request_uri:"


@pytest.fixture
def alice(services):
    return make_user(services, "alice")


@pytest.fixture
def gallery(services):
    return make_client(services, "Gallery")


def push(http, client, secret=None, **params):
    data = authorize_params(client, **params)
    if secret is None:
        return http.post("/oauth/par", data=data)
    data.pop("client_id")
    return http.post("/oauth/par", data=data, auth=(client.client_id, secret))


def pushed_uri(http, client, secret=None, **params) -> str:
    response = push(http, client, secret, **params)
    assert response.status_code == 201, response.text
    body = response.get_json()
    assert body["request_uri"].startswith(URN) and body["expires_in"] == 60
    assert response.headers["Cache-Control"] == "no-store"
    return body["request_uri"]


def authorize_by_reference(http, client, uri, **extra):
    """The browser at the authorization endpoint with the reference, consenting when asked."""
    response = http.get("/oauth/authorize", query_string={"client_id": client.client_id, "request_uri": uri, **extra})
    if response.status_code == 200 and "csrf_token" in response.text:
        response = http.post(form_action(response.text), data={"csrf_token": csrf_token(response.text), "allow": "x"})
    return response


def pushed_rows(db) -> int:
    return db.session.scalar(select(func.count()).select_from(PushedRequest))


def test_discovery_names_the_endpoint_and_whether_pushing_is_required(client):
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["pushed_authorization_request_endpoint"] == "http://localhost/oauth/par"
    assert metadata["require_pushed_authorization_requests"] is False


def test_a_pushed_request_signs_in_and_its_code_is_exchanged(client, services, alice, gallery):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret, state="st-9", nonce="n-9")
    logged_in(client, "alice")
    response = authorize_by_reference(client, app_client, uri)
    assert response.status_code in (302, 303), response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    query = query_of(location)
    assert query["state"] == "st-9"
    token = exchange(client, app_client, secret, query["code"])
    assert token.status_code == 200, token.text


def test_the_login_round_trip_carries_the_reference_not_the_parameters(client, services, alice, gallery, clock):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret, state="st-1")
    to_login = client.get("/oauth/authorize", query_string={"client_id": app_client.client_id, "request_uri": uri})
    assert to_login.status_code == 302
    next_url = query_of(to_login.headers["Location"])["next"]
    assert query_of(next_url) == {"client_id": app_client.client_id, "request_uri": uri}
    # The user takes longer than the 60 s the reference has to be opened: it was opened already.
    clock.advance(seconds=300)
    logged_in(client, "alice")
    response = authorize_by_reference(client, app_client, uri)
    assert query_of(response.headers["Location"])["state"] == "st-1"


def test_prompt_login_in_a_pushed_request_asks_for_a_new_login_once(client, services, alice, clock):
    trusted, secret = make_client(services, "Trusted app", trusted=True)
    logged_in(client, "alice")
    uri = pushed_uri(client, trusted, secret, prompt="login")
    to_login = client.get("/oauth/authorize", query_string={"client_id": trusted.client_id, "request_uri": uri})
    next_url = query_of(to_login.headers["Location"])["next"]
    assert set(query_of(next_url)) == {"client_id", "request_uri", "login_ticket"}
    assert client.get(next_url).headers["Location"].startswith("/login?next=")
    clock.advance(seconds=5)
    logged_in(client, "alice")
    assert query_of(client.get(next_url).headers["Location"])["code"]


def test_parameters_sent_beside_the_reference_are_ignored(client, services, alice, gallery):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret, scope="openid", state="pushed")
    logged_in(client, "alice")
    response = authorize_by_reference(client, app_client, uri, redirect_uri="https://evil.example/cb",
                                      scope="openid profile email groups", state="front", response_mode="form_post")
    assert response.status_code in (302, 303), response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    query = query_of(location)
    assert query["state"] == "pushed"
    token = exchange(client, app_client, secret, query["code"]).get_json()
    assert token["scope"] == "openid"


def test_a_request_uri_is_used_once(client, services, alice, gallery):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret)
    logged_in(client, "alice")
    assert authorize_by_reference(client, app_client, uri).status_code in (302, 303)
    again = authorize_by_reference(client, app_client, uri)
    assert again.status_code == 400
    assert "invalid request uri" in again.text and "used already" in again.text
    assert "Location" not in again.headers


def test_a_refusal_uses_the_request_uri_too(client, services, alice, gallery):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret)
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string={"client_id": app_client.client_id, "request_uri": uri})
    denied = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "deny": "x"})
    assert query_of(denied.headers["Location"])["error"] == "access_denied"
    assert authorize_by_reference(client, app_client, uri).status_code == 400


def test_another_clients_request_uri_is_refused(client, services, alice, gallery):
    app_client, secret = gallery
    other, _ = make_client(services, "Other app", redirect_uris=["https://other.example/cb"])
    uri = pushed_uri(client, app_client, secret)
    logged_in(client, "alice")
    response = authorize_by_reference(client, other, uri, redirect_uri="https://other.example/cb")
    assert response.status_code == 400 and "another client" in response.text
    missing = client.get("/oauth/authorize", query_string={"request_uri": uri})
    assert missing.status_code == 400 and "Location" not in missing.headers


def test_a_request_uri_not_opened_within_a_minute_is_refused(client, services, alice, gallery, clock):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret)
    logged_in(client, "alice")
    clock.advance(seconds=61)
    response = authorize_by_reference(client, app_client, uri)
    assert response.status_code == 400 and "expired" in response.text


@pytest.mark.parametrize("uri", [URN + "made-up", URN + "x" * 300, URN])
def test_a_request_uri_the_server_did_not_issue_is_refused(client, alice, gallery, uri):
    app_client, _ = gallery
    logged_in(client, "alice")
    response = client.get("/oauth/authorize", query_string={"client_id": app_client.client_id, "request_uri": uri})
    assert response.status_code == 400 and "invalid request uri" in response.text
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("params", "error", "says"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request", "redirect"),
        ({"redirect_uri": REDIRECT + "/extra"}, "invalid_request", "redirect"),
        ({"challenge": None}, "invalid_request", "PKCE"),
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"scope": "openid admin"}, "invalid_scope", ""),
        ({"response_type": "token"}, "unsupported_response_type", ""),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode"),
        ({"max_age": "soon"}, "invalid_request", "max_age"),
        ({"claims": "{not json"}, "invalid_request", "claims"),
        ({"request_uri": URN + "abc"}, "invalid_request", "request_uri"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", ""),
    ],
)
def test_a_push_that_would_not_pass_the_authorization_endpoint_is_answered_as_json(
        client, services, db, params, error, says):
    public, _ = make_client(services, "Phone app", public=True)
    response = push(client, public, **params)
    assert response.status_code == 400, response.text
    body = response.get_json()
    assert body["error"] == error, body
    assert says.lower() in body.get("error_description", "").lower()
    assert "Location" not in response.headers
    assert pushed_rows(db) == 0


@pytest.mark.parametrize(("field", "value"), [
    ("redirect_uri", 'https://gallery.example/"callback\\'),
    ("redirect_uri", REDIRECT + "\u00e9"),
    ("redirect_uri", REDIRECT + "\t"),
    ("redirect_uri", REDIRECT + "\n"),
    ("redirect_uri", REDIRECT + "\x7f"),
    ("redirect_uri", "http://127.0.0.1:\u0661\u0662\u0663/cb"),
    ("response_type", 'code"\\'),
    ("response_type", "code\u00e9"),
])
def test_characters_authlib_cannot_quote_are_a_400_at_the_push_too(client, services, db, field, value):
    public, _ = make_client(services, "Phone app", public=True)
    response = push(client, public, **{field: value})
    assert response.status_code == 400, response.text
    assert response.get_json()["error"] == "invalid_request"
    assert pushed_rows(db) == 0


@pytest.mark.parametrize(("field", "value"), [("scope", "openid\u2028"), ("state", "\x00\u2028\"\\")])
def test_odd_characters_the_authorization_endpoint_takes_are_taken_by_reference_too(client, services, alice,
                                                                                    field, value):
    public, _ = make_client(services, "Phone app", public=True, trusted=True)
    logged_in(client, "alice")
    response = authorize_by_reference(client, public, pushed_uri(client, public, **{field: value}))
    assert response.status_code == 302 and "code" in query_of(response.headers["Location"])


def test_the_servers_own_parameters_are_not_taken_from_a_pushed_request(client, services, alice, clock):
    trusted, secret = make_client(services, "Trusted app", trusted=True)
    logged_in(client, "alice")
    params = authorize_params(trusted, prompt="login")
    to_login = client.get("/oauth/authorize", query_string=params)
    ticket = query_of(query_of(to_login.headers["Location"])["next"])["login_ticket"]
    clock.advance(seconds=5)
    logged_in(client, "alice")
    # The same request pushed with the server's ticket in it: only the browser's URL may carry a
    # ticket, so this request has none and asks for a login of its own.
    data = {**params, "login_ticket": ticket}
    data.pop("client_id")
    pushed = client.post("/oauth/par", data=data, auth=(trusted.client_id, secret)).get_json()["request_uri"]
    again = client.get("/oauth/authorize", query_string={"client_id": trusted.client_id, "request_uri": pushed})
    assert again.headers["Location"].startswith("/login?next=")


def test_a_push_needs_client_authentication(client, services, db, gallery):
    app_client, secret = gallery
    data = authorize_params(app_client)
    without = client.post("/oauth/par", data=data)  # a confidential client without its secret
    wrong = client.post("/oauth/par", data=data, auth=(app_client.client_id, "wrong"))
    unknown = client.post("/oauth/par", data={**data, "client_id": "no-such-client"})
    for response in (without, wrong, unknown):
        assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
    assert pushed_rows(db) == 0


def test_a_push_naming_another_client_in_the_form_is_refused(client, services, db, gallery):
    app_client, secret = gallery
    other, _ = make_client(services, "Other app")
    data = authorize_params(other)
    response = client.post("/oauth/par", data=data, auth=(app_client.client_id, secret))
    assert response.status_code == 400 and pushed_rows(db) == 0


def test_the_client_secret_is_not_stored_with_the_pushed_request(client, services, db, gallery):
    app_client, secret = gallery
    data = authorize_params(app_client, client_secret=secret)
    assert client.post("/oauth/par", data=data).status_code == 201
    row = db.session.scalar(select(PushedRequest))
    assert secret not in repr(row.params) and "client_secret" not in dict(row.params)
    assert dict(row.params)["code_challenge"] == DEFAULT_CHALLENGE


def test_a_client_registered_to_push_may_not_send_its_request_in_the_front_channel(client, services, alice):
    strict, secret = make_client(services, "Strict app", require_par=True)
    logged_in(client, "alice")
    plain = client.get("/oauth/authorize", query_string=authorize_params(strict))
    assert plain.status_code == 302
    query = query_of(plain.headers["Location"])
    assert query["error"] == "invalid_request" and "push" in query["error_description"]
    response = authorize_by_reference(client, strict, pushed_uri(client, strict, secret))
    assert "code" in query_of(response.headers["Location"])


def test_every_client_must_push_when_the_server_requires_it(services, alice, gallery):
    app_client, _ = gallery
    strict = create_app(services.settings.replace(require_par=True), clock=services.clock)
    http = strict.test_client()
    assert http.get("/.well-known/openid-configuration").get_json()["require_pushed_authorization_requests"] is True
    logged_in(http, "alice")
    plain = http.get("/oauth/authorize", query_string=authorize_params(app_client))
    assert query_of(plain.headers["Location"])["error"] == "invalid_request"


def test_pushes_are_throttled_per_address(client, services, db):
    public, _ = make_client(services, "Phone app", public=True)
    answers = [push(client, public).status_code for _ in range(61)]
    assert answers[:60] == [201] * 60
    assert answers[60] == 429
    assert pushed_rows(db) == 60


def test_a_request_uri_opened_in_one_browser_leads_nowhere_in_another(client, services, alice, gallery, clock):
    """Whoever opens a pushed request first (anonymously, within its minute) cannot pass the link
    on for someone else to finish later: only the browser that opened it follows it."""
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret)
    reference = {"client_id": app_client.client_id, "request_uri": uri}
    opener = client.application.test_client()
    assert opener.get("/oauth/authorize", query_string=reference).headers["Location"].startswith("/login?")
    victim = client.application.test_client()
    logged_in(victim, "alice")
    at_once = victim.get("/oauth/authorize", query_string=reference)
    assert at_once.status_code == 400 and "another browser" in at_once.text
    clock.advance(seconds=70)
    later = authorize_by_reference(victim, app_client, uri)
    assert later.status_code == 400 and "another browser" in later.text
    # The browser that opened it still can, after the minute (it signs in first).
    logged_in(opener, "alice")
    assert "code" in query_of(authorize_by_reference(opener, app_client, uri).headers["Location"])


def test_a_consent_post_adds_nothing_to_a_pushed_request(client, services, alice, gallery):
    app_client, secret = gallery
    uri = pushed_uri(client, app_client, secret, scope="openid profile", nonce="n-1")
    logged_in(client, "alice")
    page = client.get("/oauth/authorize", query_string={"client_id": app_client.client_id, "request_uri": uri})
    extra = {"claims": json.dumps({"id_token": {"email": None}}), "response_mode": "form_post", "max_age": "1"}
    answer = client.post(form_action(page.text), data={"csrf_token": csrf_token(page.text), "allow": "x", **extra})
    assert answer.status_code == 303 and answer.headers["Location"].startswith(REDIRECT)
    token = exchange(client, app_client, secret, query_of(answer.headers["Location"])["code"]).get_json()
    claims = jws.extract_compact(token["id_token"].encode()).payload
    assert b"email" not in claims


@pytest.mark.parametrize(("field", "size"), [("state", 2049), ("nonce", 513)])
def test_a_state_or_nonce_too_long_to_carry_is_refused(client, services, alice, db, field, size):
    public, _ = make_client(services, "Phone app", public=True)
    pushed = push(client, public, **{field: "x" * size})
    assert pushed.status_code == 400 and field in pushed.get_json()["error_description"]
    assert pushed_rows(db) == 0
    logged_in(client, "alice")
    front = client.get("/oauth/authorize", query_string=authorize_params(public, **{field: "x" * size}))
    assert front.status_code in (302, 400) and "code=" not in front.headers.get("Location", "")
    fits = push(client, public, **{field: "x" * (size - 1)})
    assert fits.status_code == 201
