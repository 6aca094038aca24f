"""Services introspect `pkid-…:secret` at the RFC 7662 endpoint, authenticated as a client."""

import pytest

from tests.helpers.factories import make_client, make_key, make_user


@pytest.fixture
def service(services):
    return make_client(services, "Photo API", redirect_uris=(), grants=["client_credentials"], scope="photos:read",
                       introspect=True)


@pytest.fixture
def alice(services):
    return make_user(services, "alice", groups=["photos", "family"])


def introspect(client, service, token):
    resource, secret = service
    return client.post("/oauth/introspect", data={"token": token}, auth=(resource.client_id, secret))


def test_valid_key_is_active_with_owner_and_scopes(client, services, service, alice):
    key_id, secret = make_key(services, alice, scopes=["photos:read", "profile"])
    response = introspect(client, service, f"{key_id}:{secret}")
    assert response.status_code == 200
    info = response.json
    assert info["active"] is True
    assert info["token_type"] == "api_key" and info["key_id"] == key_id
    assert info["sub"] == alice.sub and info["username"] == "alice"
    assert info["groups"] == ["photos", "family"]  # for the resource server's own group rules
    assert set(info["scope"].split()) == {"photos:read", "profile"}
    assert info["iss"] == services.settings.issuer
    assert secret not in response.text


@pytest.mark.parametrize("damage", ["wrong_secret", "revoked", "expired", "checksum"])
def test_bad_keys_are_exactly_inactive(client, services, service, alice, clock, damage):
    key_id, secret = make_key(services, alice, expires_in_days=1)
    token = f"{key_id}:{secret}"
    if damage == "wrong_secret":
        _other_id, other_secret = make_key(services, alice)
        token = f"{key_id}:{other_secret}"
    elif damage == "revoked":
        services.keys.revoke(services.keys.find(key_id), actor="test")
    elif damage == "expired":
        clock.advance(days=2)
    elif damage == "checksum":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = introspect(client, service, token)
    assert response.status_code == 200 and response.json == {"active": False}


def test_introspecting_a_key_needs_client_authentication(client, services, alice):
    key_id, secret = make_key(services, alice)
    response = client.post("/oauth/introspect", data={"token": f"{key_id}:{secret}"})
    assert response.status_code == 401

