"""ID tokens of a passkey login: `amr` says `hwk` (and `user` when the authenticator verified the
user, RFC 8176), `acr` is two factors, so an app asking acr_values=2 is satisfied."""

import json

from tests.helpers.factories import DEFAULT_PASSWORD, login, make_client, make_user
from tests.helpers.oidc import decode_id_token, exchange, get_code
from tests.helpers.webauthn import SoftAuthenticator


def passkey_login(client, services, *, uv=True):
    user = make_user(services, "alice")
    device = SoftAuthenticator(uv=uv)
    options = services.passkeys.registration_options(user, "session:setup")
    services.passkeys.register(user, "session:setup", device.create(options), "Phone", actor="test")
    choice = login(client, "alice").json
    done = client.post("/api/session/login", json={
        "username": "alice", "password": DEFAULT_PASSWORD, "pending_login": choice["pending_login"],
        "webauthn": json.loads(device.get(choice["webauthn"]))})
    assert done.status_code == 200, done.json
    return user


def id_token_claims(client, services, **params):
    gallery, secret = make_client(services, trusted=True)
    code, _, _ = get_code(client, gallery, **params)
    response = exchange(client, gallery, secret, code)
    assert response.status_code == 200, response.json
    return decode_id_token(services, response.json["id_token"])


def test_id_token_of_a_password_and_passkey_login_says_hwk_and_two_factors(client, services):
    passkey_login(client, services)
    claims = id_token_claims(client, services, acr_values="2")
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == "2"


def test_without_user_verification_amr_has_no_user(client, services):
    passkey_login(client, services, uv=False)
    claims = id_token_claims(client, services)
    assert claims["amr"] == ["pwd", "hwk", "mfa"] and claims["acr"] == "2"
