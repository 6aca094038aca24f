"""Back-channel logout delivery: in the background, bounded retries, signed logout tokens."""

import threading

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from authserver.oidc.clients import BACKCHANNEL_EVENT
from authserver.oidc.logout import post_logout_token
from tests.helpers.factories import make_client, make_user
from tests.helpers.oidc import exchange, get_code, logged_in
from tests.helpers.receiver import LogoutReceiver


def no_pause(_seconds):
    """Retries without waiting, so the test does not sleep."""


def test_delivery_retries_server_errors_then_succeeds():
    with LogoutReceiver(statuses=(503, 502, 200)) as receiver:
        assert post_logout_token(receiver.url, "token-value", pause=no_pause) is True
        assert receiver.tokens == ["token-value"]


def test_delivery_gives_up_after_a_few_attempts():
    with LogoutReceiver(statuses=(500,)) as receiver:
        assert post_logout_token(receiver.url, "t", attempts=3, pause=no_pause) is False
        assert receiver.tokens == []
    assert post_logout_token("http://127.0.0.1:9/unreachable", "t", attempts=2, timeout=1, pause=no_pause) is False


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_delivery_does_not_follow_a_redirect(status):
    # A client's logout endpoint answering a redirect must not make this server send the
    # token (or any request) to wherever the redirect points, inside the network or not.
    with LogoutReceiver(statuses=(status,), location="/elsewhere") as receiver:
        assert post_logout_token(receiver.url, "t", pause=no_pause) is False
        assert receiver.requests == [("POST", "/backchannel-logout")]


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello", "gopher://127.0.0.1/"])
def test_delivery_goes_only_to_http_addresses(uri):
    assert post_logout_token(uri, "t", attempts=1, pause=no_pause) is False


def test_delivery_does_not_retry_a_refusal():
    with LogoutReceiver(statuses=(400, 200)) as receiver:
        assert post_logout_token(receiver.url, "t", pause=no_pause) is False
        assert receiver.tokens == []


def test_session_end_queues_signed_logout_tokens_without_waiting_for_delivery(client, services):
    alice = make_user(services, "alice")
    delivered = []
    gate = threading.Event()

    def slow_delivery(uri, token):
        gate.wait(10)
        delivered.append((uri, token))
        return True

    services.oidc.backchannel.deliver = slow_delivery
    gallery, secret = make_client(services, backchannel_logout_uri="https://gallery.example/bcl")
    quiet, quiet_secret = make_client(services, "Quiet")
    logged_in(client, "alice")
    for app_client, app_secret in ((gallery, secret), (quiet, quiet_secret)):
        code, _, _ = get_code(client, app_client)
        assert exchange(client, app_client, app_secret, code).status_code == 200
    session = services.sessions.active_for(alice)[0]
    futures = services.oidc.backchannel.sessions_ended([session])
    assert len(futures) == 1 and not futures[0].done()  # queued; the caller did not wait
    gate.set()
    assert futures[0].result(timeout=10) is True
    (uri, token), = delivered
    assert uri == "https://gallery.example/bcl"
    claims = jwt.decode(token, KeySet.import_key_set(services.signing.jwks())).claims
    assert claims["sub"] == alice.sub and claims["sid"] == session.id and claims["aud"] == gallery.client_id
    assert claims["events"] == {BACKCHANNEL_EVENT: {}} and claims["iss"] == services.settings.issuer


def test_revoking_all_sessions_notifies_too(client, services):
    alice = make_user(services, "alice")
    delivered = []
    arrived = threading.Event()

    def deliver(uri, token):
        delivered.append(uri)
        arrived.set()
        return True

    services.oidc.backchannel.deliver = deliver
    gallery, secret = make_client(services, trusted=True, backchannel_logout_uri="https://gallery.example/bcl")
    logged_in(client, "alice")
    code, _, _ = get_code(client, gallery)
    exchange(client, gallery, secret, code)
    assert services.sessions.revoke_all(alice) == 1
    assert arrived.wait(10)
    assert delivered == ["https://gallery.example/bcl"]


def test_revoking_an_apps_access_signs_it_out_of_the_users_sessions(client, services):
    alice = make_user(services, "alice")
    delivered = []
    services.oidc.backchannel.deliver = lambda uri, token: delivered.append((uri, token)) or True
    gallery, secret = make_client(services, backchannel_logout_uri="https://gallery.example/bcl")
    other, other_secret = make_client(services, "Other", backchannel_logout_uri="https://other.example/bcl")
    logged_in(client, "alice")
    for app_client, app_secret in ((gallery, secret), (other, other_secret)):
        code, _, _ = get_code(client, app_client)
        assert exchange(client, app_client, app_secret, code).status_code == 200
    session = services.sessions.active_for(alice)[0]
    revoked = client.delete(f"/api/me/consents/{gallery.client_id}", headers={"Origin": "http://localhost"})
    assert revoked.status_code == 200
    services.oidc.backchannel._executor.shutdown(wait=True)
    (uri, token), = delivered  # the revoked app only; the other one keeps its sign-in
    assert uri == "https://gallery.example/bcl"
    claims = jwt.decode(token, KeySet.import_key_set(services.signing.jwks())).claims
    assert claims["sub"] == alice.sub and claims["sid"] == session.id and claims["aud"] == gallery.client_id
    assert services.sessions.active_for(alice)  # the user stays signed in here
