"""An old mobile gallery app and its newer versions, played over real HTTP against a live server:
start a broker transaction, sign in through the returned URL, post back what the app received."""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests

from authserver.audit.models import AuditEvent
from tests.helpers.broker import (
    APP_SCHEME,
    OLD_APP,
    WEB_CALLBACK,
    MobileApp,
    assert_broker_error,
    broker_client,
    browser_sign_in,
    without_param,
)
from tests.helpers.oidc import pkce_pair, query_of


def audit_actions(services, outcome: str | None = None) -> list[str]:
    from authserver.extensions import db

    db.session.rollback()
    rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action.like("broker.%")).order_by(AuditEvent.id))
    return [row.action for row in rows if outcome is None or row.outcome == outcome]


def test_old_app_dropping_state_is_told_state_missing_with_the_fix(live, alice):
    client, _ = broker_client(live)
    app = MobileApp(live, client.client_id)
    started = app.started()
    assert set(started) == {"authorization_url", "transaction", "state", "expires_in"}
    assert started["expires_in"] == 600
    callback = browser_sign_in(live, started["authorization_url"])
    assert callback.startswith(APP_SCHEME + "?") and query_of(callback)["state"] == started["state"]

    # The old app version drops `state` when it hands the redirect back.
    response = app.callback(transaction=started["transaction"], url=without_param(callback, "state"))
    assert_broker_error(response, "state_missing", "OAuth state is missing", "did not pass back the state",
                               "update the app")
    assert "Traceback" not in response.text and response.headers["Content-Type"].startswith("application/json")
    assert "broker.callback" in audit_actions(live.services, "failure")


def test_allow_missing_state_client_succeeds_with_the_handle_and_logs_a_warning(live, alice, caplog):
    client, _ = broker_client(live, "Immich app (old versions)", allow_missing_state=True)
    app = MobileApp(live, client.client_id)
    started = app.started()
    callback = browser_sign_in(live, started["authorization_url"])

    with caplog.at_level(logging.WARNING, logger="authserver.broker"):
        response = app.callback(transaction=started["transaction"], url=without_param(callback, "state"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["username"] == "alice"
    assert app.userinfo(body["access_token"]).json()["sub"] == alice.sub

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "authserver.broker"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "Immich app (old versions)" in message and client.client_id in message and OLD_APP in message
    assert warnings[0].app_version == OLD_APP
    assert "broker.state_missing_allowed" in audit_actions(live.services)


def test_allow_missing_state_still_needs_the_handle(live, alice):
    client, _ = broker_client(live, allow_missing_state=True)
    app = MobileApp(live, client.client_id)
    started = app.started()
    callback = browser_sign_in(live, started["authorization_url"])
    response = app.callback(url=without_param(callback, "state"))
    assert_broker_error(response, "transaction_missing", 'send that handle')
    # The PKCE verifier is the broker's: the code alone is worth nothing at the token endpoint.
    code = query_of(callback)["code"]
    token = requests.post(live.url + "/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": APP_SCHEME, "client_id": client.client_id})
    assert token.status_code == 400 and "access_token" not in token.json()


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_generation_a_posts_the_callback_url_only(live, alice, public):
    client, secret = broker_client(live, public=public)
    app = MobileApp(live, client.client_id)
    started = app.started()
    callback = browser_sign_in(live, started["authorization_url"])

    response = app.callback(transaction=started["transaction"], url=callback)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    assert body["user"] == {"sub": alice.sub, "username": "alice", "email": "alice@photos.example",
                            "name": "Alice Liddell", "groups": ["family"]}
    info = app.userinfo(body["access_token"])
    assert info.status_code == 200 and info.json()["preferred_username"] == "alice"
    # The refresh token is the client's own: a confidential client renews with its secret.
    data = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    if public:
        renewed = requests.post(live.url + "/oauth/token", data={**data, "client_id": client.client_id}, timeout=10)
    else:
        renewed = requests.post(live.url + "/oauth/token", data=data, auth=(client.client_id, secret), timeout=10)
    assert renewed.status_code == 200, renewed.text
    assert audit_actions(live.services) == ["broker.start", "broker.complete"]


@pytest.mark.parametrize("redirect_uri", [APP_SCHEME, WEB_CALLBACK], ids=["custom-scheme", "https"])
def test_generation_b_uses_another_registered_redirect_uri(live, alice, redirect_uri):
    client, _ = broker_client(live)
    app = MobileApp(live, client.client_id, version="Immich/1.106.0 (Android 14)", redirect_uri=redirect_uri)
    started = app.started()
    callback = browser_sign_in(live, started["authorization_url"])
    assert callback.startswith(redirect_uri + "?")

    response = app.callback(transaction=started["transaction"], url=callback)
    assert response.status_code == 200, response.text
    assert app.userinfo(response.json()["access_token"]).json()["email"] == "alice@photos.example"


def test_generation_c_brings_its_own_state_and_challenge(live, alice):
    client, _ = broker_client(live)
    app = MobileApp(live, client.client_id, version="Immich/1.120.0 (iOS 18)")
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    started = app.started(state=state, code_challenge=challenge, code_challenge_method="S256")
    assert started["state"] == state
    authorize = query_of(started["authorization_url"])
    assert authorize["code_challenge"] == challenge and authorize["state"] == state and authorize["nonce"]
    callback = browser_sign_in(live, started["authorization_url"])
    received = query_of(callback)

    response = app.callback(transaction=started["transaction"], code=received["code"], state=received["state"],
                            code_verifier=verifier)
    assert response.status_code == 200, response.text
    assert app.userinfo(response.json()["access_token"]).status_code == 200


def test_broker_made_pkce_is_in_the_authorization_url(live, alice):
    client, _ = broker_client(live)
    started = MobileApp(live, client.client_id).started(scope="openid profile")
    params = query_of(started["authorization_url"])
    assert started["authorization_url"].startswith(live.url + "/oauth/authorize?")
    assert params["response_type"] == "code" and params["client_id"] == client.client_id
    assert params["redirect_uri"] == APP_SCHEME and params["scope"] == "openid profile"
    assert params["state"] == started["state"] and len(params["nonce"]) >= 32
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert started["transaction"] not in started["authorization_url"]


def test_parallel_callbacks_with_one_handle_have_one_winner(live, alice, backend):
    client, _ = broker_client(live)
    app = MobileApp(live, client.client_id)
    started = app.started()
    callback = browser_sign_in(live, started["authorization_url"])
    callers = 6
    barrier = Barrier(callers)

    def post(_):
        barrier.wait()
        return requests.post(live.url + "/api/oauth/callback", timeout=60,
                             json={"transaction": started["transaction"], "url": callback})

    with ThreadPoolExecutor(callers) as pool:
        responses = list(pool.map(post, range(callers)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (callers - 1), [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"state_used"}
    winner = next(r for r in responses if r.status_code == 200).json()
    assert app.userinfo(winner["access_token"]).status_code == 200
