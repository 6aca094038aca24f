"""Every broker error, produced the way a real app or user runs into it: 400 JSON naming cause and fix."""

from __future__ import annotations

import secrets

import pytest
import requests
from sqlalchemy import select

from authserver.extensions import db
from authserver.oidc.models import OAuthToken
from tests.helpers.broker import (
    MobileApp,
    assert_broker_error,
    broker_client,
    browser_sign_in,
    with_param,
    without_param,
)
from tests.helpers.factories import make_client
from tests.helpers.oidc import pkce_pair, query_of


@pytest.fixture
def mobile(live, alice):
    client, _ = broker_client(live)
    return MobileApp(live, client.client_id)


def signed_in(live, mobile, **extra) -> tuple[dict, str]:
    started = mobile.started(**extra)
    return started, browser_sign_in(live, started["authorization_url"])


def test_state_unknown_when_the_state_was_never_issued(live, mobile):
    started, callback = signed_in(live, mobile)
    response = mobile.callback(transaction=started["transaction"], url=with_param(callback, "state", "forged-state"))
    assert_broker_error(response, "state_unknown", "never issued by this server", "open exactly the authorization_url")


def test_state_mismatch_when_the_app_mixes_up_two_sign_ins(live, mobile):
    first = mobile.started()
    second, callback = signed_in(live, mobile)
    response = mobile.callback(transaction=first["transaction"], url=callback)
    assert_broker_error(response, "state_mismatch", "different sign-in", "start the sign-in again")
    # Refused before anything was spent: the right pairing still works.
    assert mobile.callback(transaction=second["transaction"], url=callback).status_code == 200


def test_state_expired_after_ten_minutes(live, mobile):
    started, callback = signed_in(live, mobile)
    live.clock.advance(seconds=601)
    response = mobile.callback(transaction=started["transaction"], url=callback)
    assert_broker_error(response, "state_expired", "longer than 10 minutes", "start the sign-in again")


def test_state_used_when_the_callback_is_sent_twice(live, mobile):
    started, callback = signed_in(live, mobile)
    assert mobile.callback(transaction=started["transaction"], url=callback).status_code == 200
    response = mobile.callback(transaction=started["transaction"], url=callback)
    assert_broker_error(response, "state_used", "already used", "start a new sign-in")


def test_transaction_unknown_and_bad_handles_are_throttled_per_address(live, mobile):
    response = mobile.callback(transaction=secrets.token_urlsafe(32), url="app.immich:///oauth-callback?code=x&state=y")
    assert_broker_error(response, "transaction_unknown", "not known to this server", "POST /api/oauth/authorize")
    for _ in range(29):
        assert mobile.callback(transaction="nope", code="x", state="y").json()["error"] == "transaction_unknown"
    refused = mobile.callback(transaction="nope", code="x", state="y")
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1


def test_transaction_missing(live, mobile):
    _, callback = signed_in(live, mobile)
    assert_broker_error(mobile.callback(url=callback), "transaction_missing", '"transaction"')


def test_code_rejected_when_the_code_is_altered(live, mobile):
    started, callback = signed_in(live, mobile)
    response = mobile.callback(transaction=started["transaction"], url=with_param(callback, "code", "tampered"))
    assert_broker_error(response, "code_rejected", "rejected the authorization code", "invalid_grant",
                        "start the sign-in again")
    # The transaction is spent either way: one sign-in, one attempt.
    assert mobile.callback(transaction=started["transaction"], url=callback).json()["error"] == "state_used"


def test_code_rejected_when_the_apps_own_verifier_is_wrong(live, mobile):
    _, challenge = pkce_pair()
    started, callback = signed_in(live, mobile, state="own-state-1", code_challenge=challenge)
    received = query_of(callback)
    response = mobile.callback(transaction=started["transaction"], code=received["code"], state=received["state"],
                            code_verifier=pkce_pair()[0])
    assert_broker_error(response, "code_rejected", "PKCE verifier")
    # A code whose exchange failed stays unredeemed: nothing was issued for it.
    assert db.session.scalars(select(OAuthToken)).all() == []


def test_code_verifier_missing_when_the_app_made_the_challenge(live, mobile):
    _, challenge = pkce_pair()
    started, callback = signed_in(live, mobile, code_challenge=challenge)
    received = query_of(callback)
    response = mobile.callback(transaction=started["transaction"], code=received["code"], state=received["state"])
    assert_broker_error(response, "code_verifier_missing", "send the code_verifier")


def test_code_missing_when_the_url_is_not_the_redirect(live, mobile):
    started, _ = signed_in(live, mobile)
    response = mobile.callback(transaction=started["transaction"], url="app.immich:///oauth-callback")
    assert_broker_error(response, "code_missing", "send the full URL")


def test_nonce_mismatch_when_the_authorization_url_was_altered_and_tokens_are_revoked(live, mobile):
    started = mobile.started()
    callback = browser_sign_in(live, without_param(started["authorization_url"], "nonce"))
    response = mobile.callback(transaction=started["transaction"], url=callback)
    assert_broker_error(response, "nonce_mismatch", "nonce does not match", "open exactly the authorization_url")
    db.session.rollback()
    issued = db.session.scalars(select(OAuthToken)).all()
    assert len(issued) == 1 and issued[0].revoked_at is not None


def test_nonce_mismatch_when_an_app_reuses_its_state_and_challenge(live, mobile):
    verifier, challenge = pkce_pair()
    first = mobile.started(state="same-state", code_challenge=challenge)
    _, callback = signed_in(live, mobile, state="same-state", code_challenge=challenge)
    received = query_of(callback)
    response = mobile.callback(transaction=first["transaction"], code=received["code"], state=received["state"],
                            code_verifier=verifier)
    assert_broker_error(response, "nonce_mismatch")


def test_provider_error_is_passed_through_with_its_description(live, mobile):
    started = mobile.started()
    callback = browser_sign_in(live, started["authorization_url"], allow=False)
    assert query_of(callback)["error"] == "access_denied"
    response = mobile.callback(transaction=started["transaction"], url=callback)
    body = assert_broker_error(response, "access_denied", "The login server answered access_denied",
                               "choose Allow")
    description = query_of(callback).get("error_description")
    if description:
        assert description.rstrip(". ") in body["error_description"]


def test_provider_error_code_that_is_not_a_code_is_not_reflected(live, mobile):
    started = mobile.started()
    response = mobile.callback(transaction=started["transaction"], error="<script>", error_description="x\x07y")
    body = assert_broker_error(response, "provider_error", "(xy)")
    assert "<script>" not in body["error_description"]


def test_issuer_mismatch_when_another_server_answered(live, mobile):
    started, callback = signed_in(live, mobile)
    response = mobile.callback(transaction=started["transaction"],
                            url=with_param(callback, "iss", "https://evil.example"))
    assert_broker_error(response, "issuer_mismatch", "another login server")


@pytest.mark.parametrize("body,error,phrase", [
    ({"client_id": "missing"}, "invalid_client", "client_id setting"),
    ({"redirect_uri": "app.other:///cb"}, "invalid_redirect_uri", "--redirect-uri"),
    ({"scope": "openid admin"}, "invalid_scope", "registered for"),
    ({"scope": "profile email"}, "invalid_scope", "must include openid"),
    ({"code_challenge": "short"}, "invalid_request", "43-character"),
    ({"code_challenge": "A" * 43, "code_challenge_method": "plain"}, "invalid_request", "S256"),
    ({"state": "tab\there"}, "invalid_request", "visible ASCII"),
], ids=["unknown-client", "redirect", "scope-beyond", "scope-without-openid", "challenge", "plain", "state"])
def test_start_errors_name_cause_and_fix(live, mobile, body, error, phrase):
    assert_broker_error(mobile.start(**body), error, phrase)


def test_start_refuses_a_client_not_registered_for_the_broker(live, alice):
    plain, _ = make_client(live.services, "Web gallery", redirect_uris=["https://photos.example/cb"])
    response = MobileApp(live, plain.client_id, redirect_uri="https://photos.example/cb").start()
    assert_broker_error(response, "unauthorized_client", "--broker")


def test_start_refuses_a_broker_client_it_cannot_redeem_for(live, alice):
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]}
    client, _ = broker_client(live, public=False, token_endpoint_auth_method="private_key_jwt", jwks=jwks)
    assert_broker_error(MobileApp(live, client.client_id).start(), "unauthorized_client", "client secret")


@pytest.mark.parametrize("kwargs", [
    {"data": "not json", "headers": {"Content-Type": "text/plain"}},
    {"data": "{", "headers": {"Content-Type": "application/json"}},
    {"json": []},
    {"json": {"transaction": 5, "url": "x"}},
    {"json": {"transaction": "t", "url": ["x"]}},
    {"json": {"transaction": "t", "url": "http://[::1/x?code=a"}},
    {"json": {"transaction": "t", "url": "app:///cb?code=a&code=b&state=s"}},
    {"json": {"transaction": "t", "url": "app:///cb?code=a", "code": "b"}},
    {"json": {"transaction": "t" * 300, "code": "a"}},
    {"json": {"transaction": "t\u0000", "code": "a"}},
    {"json": {"transaction": "t", "code": "a" * 5000}},
], ids=["text", "broken", "array", "number", "list", "bad-url", "repeated", "both", "long", "nul", "long-code"])
def test_bad_callback_bodies_are_clear_4xx(live, kwargs):
    response = requests.post(live.url + "/api/oauth/callback", timeout=10, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] and response.json()["error_description"]


@pytest.mark.parametrize("body", [
    {}, {"client_id": 1, "redirect_uri": "x"}, {"client_id": "x" * 65, "redirect_uri": "x"},
    {"client_id": "c", "redirect_uri": "x", "scope": ["openid"]},
])
def test_bad_start_bodies_are_clear_400s(live, body):
    response = requests.post(live.url + "/api/oauth/authorize", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_request", "invalid_client"}


def test_starts_are_throttled_per_address_and_failed_starts_audited(client, services, db):
    from authserver.audit.models import AuditEvent

    body = {"client_id": "nobody", "redirect_uri": "app.x:///cb"}
    for _ in range(120):
        assert client.post("/api/oauth/authorize", json=body).json["error"] == "invalid_client"
    refused = client.post("/api/oauth/authorize", json=body)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    failures = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "broker.start")).all()
    assert len(failures) == 120 and {e.outcome for e in failures} == {"failure"}
    assert failures[0].actor == "client:nobody" and failures[0].details == {"error": "invalid_client"}


def test_the_apps_version_header_is_audited_with_its_callback(live, mobile):
    from authserver.audit.models import AuditEvent

    started, callback = signed_in(live, mobile)
    mobile.http.headers["X-App-Version"] = "1.94.0+build.7"
    assert mobile.callback(transaction=started["transaction"], url=callback).status_code == 200
    db.session.rollback()
    done = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "broker.complete"))
    assert done.details["app_version"] == "1.94.0+build.7" and done.target == "user:alice"


@pytest.mark.parametrize("field,value", [
    ("state", "own-state\n"),
    ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\n"),
])
def test_a_trailing_newline_does_not_slip_past_the_field_checks(live, mobile, field, value):
    refused = mobile.start(**{field: value})
    assert refused.status_code == 400, refused.text
    assert mobile.start(**{field: value.rstrip("\n")}).status_code == 200
