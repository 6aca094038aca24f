"""Discovery documents, JWKS, signing keys sealed at rest and rotated, client registration."""

import json
import subprocess
from datetime import UTC, datetime

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssMetadata
from joserfc import jwt
from joserfc.jwk import KeySet

from authserver import create_app
from authserver.crypto import SealError, SecretSealer, keyed_hash
from authserver.oidc.clients import ClientError
from authserver.oidc.models import OAuthClient, SigningKey
from authserver.oidc.signing import PUBLISH_AHEAD, SigningKeyError
from tests.helpers.factories import make_client, make_user
from tests.helpers.servers import cli_command, subprocess_env


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery_lists_every_endpoint_and_capability(client, services, path):
    doc = client.get(path).json
    AuthorizationServerMetadata(doc).validate(metadata_classes=[IssMetadata])
    issuer = services.settings.issuer
    assert doc["issuer"] == issuer
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "introspection_endpoint",
                 "revocation_endpoint", "end_session_endpoint"):
        assert doc[name].startswith(issuer + "/oauth/")
        assert client.options(doc[name].removeprefix(issuer)).status_code in (200, 204)
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials",
                                                 "urn:ietf:params:oauth:grant-type:device_code"}
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
    assert doc["id_token_signing_alg_values_supported"] == ["RS256", "ES256", "EdDSA"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert {"sub", "email", "email_verified", "name", "preferred_username", "groups"} <= set(doc["claims_supported"])
    assert doc["backchannel_logout_supported"] is True and doc["request_parameter_supported"] is False


def test_issuer_is_byte_for_byte_with_trailing_slash(services, clock):
    app = create_app(services.settings.replace(issuer="https://photos.example/auth/"), clock=clock)
    doc = app.test_client().get("/.well-known/openid-configuration").json
    assert doc["issuer"] == "https://photos.example/auth/"
    assert doc["token_endpoint"] == "https://photos.example/auth/oauth/token"


def test_jwks_publishes_public_keys_with_kids(client):
    keys = client.get("/oauth/jwks").json["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "EdDSA", "RS256"]
    assert all(key["kid"] and key["use"] == "sig" and not {"d", "p", "q", "k"} & key.keys() for key in keys)


def test_private_keys_are_sealed_under_the_master_key(services, db):
    services.signing.active_key("ES256")
    row = db.session.scalar(db.select(SigningKey).where(SigningKey.alg == "ES256"))
    assert row.private_sealed.startswith("v1.") and '"d"' not in row.private_sealed
    opened = json.loads(services.sealer.unseal(row.private_sealed, b"signing-key:" + row.kid.encode()))
    assert opened["d"]
    other = SecretSealer([b"\x01" * 32])
    with pytest.raises(SealError):
        other.unseal(row.private_sealed, b"signing-key:" + row.kid.encode())


def test_rotation_publishes_the_next_key_first_and_signs_with_it_after_the_jwks_lifetime(client, services, clock):
    # A relying party (openid-client and the like) caches JWKS for the max-age it is given; a
    # key that signed at once failed its verifications with "no applicable keys" meanwhile.
    old = services.signing.active_key("RS256").kid
    cached = client.get("/oauth/jwks")
    max_age = int(cached.headers["Cache-Control"].split("max-age=")[1])
    relying_party = KeySet.import_key_set(cached.json)

    rotated = {r.alg: r for r in services.signing.rotate()}["RS256"]
    assert rotated.kid != old and rotated.signs_from == clock.now() + PUBLISH_AHEAD
    assert PUBLISH_AHEAD.total_seconds() > max_age
    assert rotated.kid in {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}  # published at once
    for elapsed in (0, max_age):  # as long as the relying party may keep its copy
        clock.advance(seconds=elapsed)
        token = services.signing.sign({"x": 1})
        assert jwt.decode(token, relying_party).header["kid"] == old  # the cached set still verifies
    again = {r.alg: r for r in services.signing.rotate()}["RS256"]
    assert again.kid == rotated.kid  # a scheduled rotation is not doubled

    clock.advance(seconds=PUBLISH_AHEAD.total_seconds() - max_age)
    token = services.signing.sign({"x": 2})
    refreshed = KeySet.import_key_set(client.get("/oauth/jwks").json)  # fetched after max-age: has both
    assert jwt.decode(token, refreshed).header["kid"] == rotated.kid
    assert old in {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    clock.advance(seconds=3600 + 301)
    kids = {k["kid"] for k in services.signing.jwks()["keys"]}
    assert old not in kids and rotated.kid in kids


def test_an_emergency_rotation_signs_with_the_new_key_at_once(services, clock):
    old = services.signing.active_key("ES256").kid
    old_token = services.signing.sign({"x": 1}, "ES256")
    rotated = {r.alg: r for r in services.signing.rotate(now=True)}
    assert set(rotated) == {"ES256", "EdDSA", "RS256"} and rotated["ES256"].signs_from == clock.now()
    token = services.signing.sign({"x": 2}, "ES256")
    keys = KeySet.import_key_set(services.signing.jwks())
    assert jwt.decode(token, keys).header["kid"] == rotated["ES256"].kid != old
    assert jwt.decode(old_token, keys).claims == {"x": 1}  # still published until what it signed expires


def test_a_withdrawn_key_leaves_jwks_at_once_and_what_it_signed_is_revoked(client, services, clock):
    alice = make_user(services, "alice")
    api, secret = make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"],
                              scope="photos:read", access_token_format="jwt", introspect=True)
    issued = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(api.client_id, secret))
    access = issued.json["access_token"]
    kid = jwt.decode(access, KeySet.import_key_set(services.signing.jwks())).header["kid"]
    assert introspect(client, api, secret, access)["active"] is True

    withdrawn, revoked = services.oidc.withdraw_signing_key(kid, actor="admin")
    assert (withdrawn.kid, revoked) == (kid, 1)
    assert kid not in {k["kid"] for k in client.get("/oauth/jwks").json["keys"]}
    assert introspect(client, api, secret, access) == {"active": False}
    fresh = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(api.client_id, secret))
    new_kid = jwt.decode(fresh.json["access_token"], KeySet.import_key_set(services.signing.jwks())).header["kid"]
    assert new_kid != kid and introspect(client, api, secret, fresh.json["access_token"])["active"] is True
    with pytest.raises(SigningKeyError):
        services.oidc.withdraw_signing_key(kid, actor="admin")  # gone already
    with pytest.raises(SigningKeyError):
        services.oidc.withdraw_signing_key("no-such-kid", actor="admin")
    assert alice.id


def introspect(client, resource, secret, token):
    return client.post("/oauth/introspect", data={"token": token}, auth=(resource.client_id, secret)).json


def test_reseal_all_moves_keys_to_the_current_master_key(services, app, db, clock):
    services.signing.active_key("RS256")
    new_master = b"\x02" * 32
    rotated = services.settings.replace(master_keys=(new_master, *services.settings.master_keys))
    later = create_app(rotated, clock=clock).extensions["authserver"]
    assert later.signing.reseal_all(later.sealer) == 3  # one key per algorithm
    db.session.commit()
    row = db.session.scalar(db.select(SigningKey))
    assert SecretSealer([new_master]).unseal(row.private_sealed, b"signing-key:" + row.kid.encode())


def test_client_secret_is_an_hmac_under_the_pepper(services, db):
    gallery, secret = make_client(services)
    row = db.session.scalar(db.select(OAuthClient).where(OAuthClient.client_id == gallery.client_id))
    assert len(secret) >= 43 and secret not in row.secret_hmac
    assert row.secret_hmac == keyed_hash(services.settings.pepper, secret)
    assert gallery.check_client_secret(secret) and not gallery.check_client_secret(secret + "x")


@pytest.mark.parametrize("options,message", [
    ({"redirect_uris": []}, "redirect-uri"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "not allowed"),
    ({"redirect_uris": ["https://x.example/cb#frag"]}, "fragment"),
    ({"grant_types": ["password"]}, "Unknown grant"),
    ({"public": True, "grant_types": ["client_credentials"]}, "public client"),
    ({"id_token_signed_response_alg": "HS256"}, "algorithm"),
    ({"extra_claims": ["role"]}, "NAME=KIND"),
    ({"extra_claims": ["sub=static:x"]}, "standard claim"),
    # Found by the black-box review: these stood in for the token's own claims.
    *[({"extra_claims": [f"{name}=static:x"]}, "standard claim") for name in ("jti", "nbf", "scope", "client_id",
                                                                              "cnf", "typ")],
    ({"token_endpoint_auth_method": "private_key_jwt"}, "JWKS"),
])
def test_invalid_client_registrations_are_refused(services, options, message):
    options = {"redirect_uris": ["https://x.example/cb"], "grant_types": ["authorization_code"], **options}
    with pytest.raises(ClientError, match=message):
        services.oidc.clients.create(name="x", **options)


def test_cli_client_create_prints_credentials_once_as_json(tmp_path):
    env = subprocess_env(AUTHSERVER_INSTANCE_PATH=str(tmp_path), AUTHSERVER_LOG_LEVEL="ERROR")

    def run(*args):
        return subprocess.run([*cli_command(), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert run("db", "upgrade").returncode == 0
    created = run("client", "create", "--name", "Immich", "--redirect-uri", "app.immich:///oauth-callback",
                  "--redirect-uri", "https://photos.example/auth/login", "--scope", "openid email profile",
                  "--grant", "authorization_code", "--grant", "refresh_token", "--trusted", "--broker",
                  "--allow-missing-state", "--extra-claim", "immich_role=admin_flag:admin:user", "--json")
    assert created.returncode == 0, created.stderr
    payload = json.loads(created.stdout)
    assert set(payload) == {"client_id", "client_secret", "grant_types", "scope", "redirect_uris"}
    assert payload["grant_types"] == ["authorization_code", "refresh_token"]
    public = json.loads(
        run("client", "create", "--name", "App", "--public", "--redirect-uri", "app.x:///cb", "--json").stdout)
    assert set(public) == {"client_id", "grant_types", "scope", "redirect_uris"}  # no secret
    bad = run("client", "create", "--name", "Bad", "--json")
    assert bad.returncode == 1 and "redirect-uri" in bad.stderr
    wild = run("client", "create", "--name", "Wild", "--redirect-uri", "https://*.example.com/cb")
    assert wild.returncode == 1 and "wildcards are not supported" in wild.stderr
    lan = run("client", "create", "--name", "LAN", "--redirect-uri", "http://192.168.1.10:2283/auth/login")
    assert lan.returncode == 1 and "plain http" in lan.stderr
    admin = run("client", "create", "--name", "Admin app", "--redirect-uri", "https://a.example/cb",
                "--scope", "openid admin")
    assert admin.returncode == 1 and "--first-party" in admin.stderr
    official = run("client", "create", "--name", "Console", "--redirect-uri", "https://a.example/cb", "--scope",
                   "openid admin", "--first-party", "--introspect", "--no-pkce", "--json")
    assert official.returncode == 0, official.stderr
    rotated = run("signing-key", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    scheduled = {key["alg"]: key for key in json.loads(rotated.stdout)["keys"]}["RS256"]
    assert set(json.loads(rotated.stdout)["kids"]) and scheduled["signs_from"] > datetime.now(UTC).isoformat()
    at_once = run("signing-key", "rotate", "--now", "--json")
    switched = {key["alg"]: key for key in json.loads(at_once.stdout)["keys"]}["RS256"]
    assert switched["kid"] == scheduled["kid"] and switched["signs_from"] <= datetime.now(UTC).isoformat()
    revoked = run("signing-key", "revoke", scheduled["kid"], "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"kid": scheduled["kid"], "alg": "RS256", "revoked_tokens": 0}
    again = run("signing-key", "revoke", scheduled["kid"])
    assert again.returncode == 1 and "no published signing key" in again.stderr
    first = run("seed")
    assert "demo client id" in first.stdout and "demo secret" in first.stdout
    second = run("seed")
    assert "demo" not in second.stdout and "already set up" in second.stdout


def test_broker_flags_are_stored(services):
    created = services.oidc.clients.create(name="Thin", redirect_uris=["app.thin:///cb"], public=True, broker=True,
                                           allow_missing_state=True)
    assert created.row.is_broker and created.row.allow_missing_state and created.client_secret is None


def test_broker_client_secret_is_sealed_for_the_broker_only(services, db, clock):
    created = services.oidc.clients.create(name="Legacy app", redirect_uris=["https://legacy.example/cb"], broker=True)
    assert services.oidc.clients.broker_secret(created.row.client_id) == created.client_secret
    row = db.session.scalar(db.select(OAuthClient).where(OAuthClient.client_id == created.row.client_id))
    assert created.client_secret not in row.secret_sealed
    plain, _ = make_client(services, "Plain")
    assert services.oidc.clients.broker_secret(plain.client_id) is None
    rotated = services.settings.replace(master_keys=(b"\x03" * 32, *services.settings.master_keys))
    later = create_app(rotated, clock=clock).extensions["authserver"]
    assert later.oidc.clients.reseal_all(later.sealer) == 1
    db.session.commit()
    assert later.oidc.clients.broker_secret(created.row.client_id) == created.client_secret


def test_every_algorithms_key_is_published_before_its_first_token(client, services):
    # Found by the black-box review: the first ES256 (or EdDSA) token of a client was signed by
    # a key made on the spot, absent from a JWKS fetched a moment before.
    cached = KeySet.import_key_set(client.get("/oauth/jwks").json)
    assert {key.alg for key in cached} == {"RS256", "ES256", "EdDSA"}
    for alg in ("ES256", "EdDSA", "RS256"):
        token = services.signing.sign({"x": alg}, alg)
        assert jwt.decode(token, cached, algorithms=[alg]).claims == {"x": alg}


@pytest.mark.parametrize("look_alike", [
    "gallery", "GALLERY", " Gallery ", "Gal\u00adlery", "Gal\u200blery", "Gal\u2060lery", "Gallery\u00a0",
    "\uff27allery", "Ga\u200elle\u202ery", "Gallery\u2003", "Gallery\u3000",
])
def test_a_client_name_that_only_looks_different_is_a_duplicate_or_refused(services, look_alike):
    # Found by the black-box review: case, invisible and compatibility forms slipped past the check.
    make_client(services, "Gallery")
    with pytest.raises(ClientError, match="exists already|invisible, control"):
        make_client(services, look_alike)


def test_accented_names_in_either_unicode_form_are_one_name(services):
    make_client(services, "Caf\u00e9 photos")  # é composed
    with pytest.raises(ClientError, match="exists already"):
        make_client(services, "Cafe\u0301 photos")  # e + combining accent
