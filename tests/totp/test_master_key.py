"""Master-key rotation: every sealed value re-sealed in one transaction; TOTP logins keep working."""

import itertools
import json
import secrets
import subprocess

import pyotp
import pytest
import requests
from sqlalchemy import select, text

from authserver import create_app
from authserver.crypto import SealError, SecretSealer, key_id
from authserver.schema import upgrade
from authserver.sealing import RotationFailed, record_sealing_key, rotate_master_key
from authserver.settings import Settings, decode_key
from authserver.totp.models import TotpCredential
from tests.helpers.factories import DEFAULT_PASSWORD, Authenticator, enrol_totp, make_client, make_user
from tests.helpers.servers import Instance, cli_command, subprocess_env


def sealed_values(db):
    rows = db.session.execute(text("SELECT totp_secret_sealed, pending_secret_sealed FROM totp_credentials"))
    return [v for row in rows for v in row if v is not None]


def test_rotation_leaves_every_user_able_to_log_in_under_the_new_key_alone(app, services, settings, clock, db):
    users = [make_user(services) for _ in range(3)]
    devices = [enrol_totp(services, user)[0] for user in users]
    # A pending secret is re-sealed too.
    services.totp.begin_enrolment(users[0], actor="test", proof={"code": devices[0].code()}, address="192.0.2.1")
    clock.advance(seconds=30)  # that code's step is spent
    old_values = sealed_values(db)
    new_key = secrets.token_bytes(32)

    rotation = rotate_master_key(services.sealed, settings.master_keys, new_key, clock.now())

    assert rotation.resealed["totp_secrets"] == 4
    assert rotation.older_key_ids == [key_id(settings.master_keys[0])]
    assert services.sealer.current_key_id == key_id(new_key)  # the database's record, for every instance
    values = sealed_values(db)
    assert len(values) == 4 and not set(values) & set(old_values)
    for value in values:
        assert value.startswith(f"v1.{key_id(new_key)}.")
        assert all(d.totp.secret not in value for d in devices)

    retired = create_app(settings.replace(master_keys=(new_key,)), clock=clock)
    with retired.app_context():
        client = retired.test_client()
        for user, device in zip(users, devices, strict=True):
            response = client.post("/api/session/login", json={
                "username": user.username, "password": DEFAULT_PASSWORD, "totp_code": device.code()})
            assert response.status_code == 200, response.json
            assert response.json["auth_method"] == "password+totp"


def test_a_value_that_does_not_open_stops_the_rotation_and_changes_nothing(services, settings, db, clock):
    for _ in range(2):
        enrol_totp(services, make_user(services))
    stranger = SecretSealer([secrets.token_bytes(32)])
    last = db.session.execute(text("SELECT max(user_id) FROM totp_credentials")).scalar()
    db.session.execute(text("UPDATE totp_credentials SET totp_secret_sealed = :v WHERE user_id = :u"),
                       {"v": stranger.seal(b"x" * 20, f"totp-secret:user:{last}".encode()), "u": last})
    db.session.commit()
    before = sealed_values(db)
    with pytest.raises(RotationFailed, match="totp_credentials.totp_secret_sealed"):
        rotate_master_key(services.sealed, settings.master_keys, secrets.token_bytes(32), clock.now())
    assert sealed_values(db) == before
    assert services.sealer.current_key_id == key_id(settings.master_keys[0])  # the sealing key did not change


class ValuesThatFail:
    def reseal(self, sealer):
        raise RotationFailed("failing_values: test value does not open")


def test_every_registered_kind_of_sealed_value_is_one_transaction(services, settings, db, clock):
    enrol_totp(services, make_user(services))
    before = sealed_values(db)
    services.sealed.register("failing_values", ValuesThatFail())
    with pytest.raises(RotationFailed):
        rotate_master_key(services.sealed, settings.master_keys, secrets.token_bytes(32), clock.now())
    assert sealed_values(db) == before  # the TOTP re-seal that ran first was rolled back


def test_registering_one_kind_twice_is_a_mistake(services):
    with pytest.raises(ValueError):
        services.sealed.register("totp_secrets", *services.totp.sealed_columns())


# -- the CLI, end to end on a development instance -----------------------------


def run_cli(env, *args):
    return subprocess.run([*cli_command(), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def instance(tmp_path):
    """A development instance (SQLite, generated secrets) with user alice; only the command under test is a process."""
    env = subprocess_env(AUTHSERVER_INSTANCE_PATH=str(tmp_path), AUTHSERVER_ENV="development",
                         AUTHSERVER_LOG_LEVEL="WARNING")
    app, _ = app_for(env)
    with app.app_context():
        upgrade()
        make_user(app.extensions["authserver"], "alice")
    return tmp_path, env


def app_for(env, **overrides):
    from authserver.clock import FixedClock

    clock = FixedClock()
    values = {k: v for k, v in env.items() if k.startswith("AUTHSERVER_")}
    return create_app(Settings.from_env({**values, **overrides}), clock=clock), clock


def enrol_alice(env, **overrides) -> Authenticator:
    app, clock = app_for(env, **overrides)
    with app.app_context():
        svc = app.extensions["authserver"]
        device, _ = enrol_totp(svc, svc.accounts.find("alice"))
        return Authenticator(device.totp.secret, clock)


LATER = itertools.count(1)  # each login a few steps later than the last: a step's code is accepted once


def totp_login_works(env, secret: str, **overrides) -> bool:
    app, clock = app_for(env, **overrides)
    with app.app_context():
        clock.advance(seconds=90 * next(LATER))
        response = app.test_client().post("/api/session/login", json={
            "username": "alice", "password": DEFAULT_PASSWORD,
            "totp_code": Authenticator(secret, clock).code()})
        return response.status_code == 200


def test_cli_rotation_and_retirement_with_the_instance_key_file(instance):
    path, env = instance
    key_file = path / "master_key"
    old_key = key_file.read_text().strip()
    device = enrol_alice(env)

    result = run_cli(env, "master-key", "rotate", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["resealed"]["totp_secrets"] == 1 and out["stored_in"] == str(key_file)
    assert "master_key" not in out  # written to its file, not printed
    assert out["older_key_ids"] == [key_id(decode_key(old_key, "MASTER_KEY"))]
    keyring = key_file.read_text().strip().split(",")
    assert keyring[0] == old_key and len(keyring) == 2  # the old key stays until it is retired
    new_key = keyring[1]
    assert out["key_id"] == key_id(decode_key(new_key, "MASTER_KEY"))
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert totp_login_works(env, device.totp.secret)

    retired = run_cli(env, "master-key", "retire", "--json")
    assert retired.returncode == 0, retired.stderr
    assert json.loads(retired.stdout)["retired_key_ids"] == out["older_key_ids"]
    assert key_file.read_text().strip() == new_key
    assert totp_login_works(env, device.totp.secret)
    check = run_cli(env, "master-key", "check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["kinds"]["totp_secrets"] == {"by_key": {out["key_id"]: 1}, "not_opening": []}
    # Before: a second rotation refused to run. Now each is the same three steps again.
    again = run_cli(env, "master-key", "rotate", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["older_key_ids"] == [out["key_id"]]
    assert totp_login_works(env, device.totp.secret)


def test_cli_rotation_from_the_environment_takes_three_steps(instance):
    path, env = instance
    old_key = (path / "master_key").read_text().strip()
    env = {**env, "AUTHSERVER_MASTER_KEY": old_key}
    device = enrol_alice(env)

    # Re-sealing under a key the running servers do not hold would lock them out: refused.
    refused = run_cli(env, "master-key", "rotate", "--json")
    assert refused.returncode == 1 and "master-key add" in refused.stderr and refused.stdout == ""
    added = run_cli(env, "master-key", "add", "--json")
    assert added.returncode == 0, added.stderr
    out = json.loads(added.stdout)
    new_key, new_id = out["master_key"], out["key_id"]
    assert out["stored_in"] is None and new_id == key_id(decode_key(new_key, "MASTER_KEY"))
    assert (path / "master_key").read_text().strip() == old_key  # the environment is the operator's to change
    unknown = run_cli(env, "master-key", "rotate", "--to", new_id)
    assert unknown.returncode == 1 and "no key" in unknown.stderr  # not in this server's keyring yet

    both = {**env, "AUTHSERVER_MASTER_KEY": f"{old_key},{new_key}"}
    assert totp_login_works(both, device.totp.secret)  # the old key still seals until the rotation
    rotated = run_cli(both, "master-key", "rotate", "--to", new_id, "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["resealed"]["totp_secrets"] == 1
    retire = run_cli(both, "master-key", "retire")
    assert retire.returncode == 0 and f"AUTHSERVER_MASTER_KEY=<key {new_id}>" in retire.stdout
    assert totp_login_works(env, device.totp.secret, AUTHSERVER_MASTER_KEY=new_key)
    assert not totp_login_works(env, device.totp.secret, AUTHSERVER_MASTER_KEY=old_key)


def test_cli_rotation_refuses_a_malformed_key(tmp_path):
    env = subprocess_env(AUTHSERVER_INSTANCE_PATH=str(tmp_path), AUTHSERVER_ENV="development")
    result = run_cli(env, "master-key", "rotate", "--new-key", "too-short")
    assert result.returncode == 2
    assert "--new-key must be 32 bytes" in result.stderr


def test_cli_totp_reset(instance):
    _, env = instance
    enrol_alice(env)
    result = run_cli(env, "totp", "reset", "alice", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"username": "alice", "reset": True, "had_totp": True}
    app, _ = app_for(env)
    with app.app_context():
        response = app.test_client().post("/api/session/login",
                                          json={"username": "alice", "password": DEFAULT_PASSWORD})
        assert response.status_code == 200 and response.json["auth_method"] == "password"
    unknown = run_cli(env, "totp", "reset", "nobody")
    assert unknown.returncode == 1 and 'no user "nobody"' in unknown.stderr


def test_rotation_reseals_signing_keys_and_broker_secrets_too(app, services, settings, clock, db):
    services.signing.active_key("RS256")
    broker, broker_secret = make_client(services, "Legacy app", broker=True)
    new_key = secrets.token_bytes(32)

    rotation = rotate_master_key(services.sealed, settings.master_keys, new_key, clock.now())

    assert rotation.resealed["signing_keys"] == 3  # one key per algorithm
    assert rotation.resealed["client_secrets"] == 1
    retired = create_app(settings.replace(master_keys=(new_key,)), clock=clock).extensions["authserver"]
    assert retired.oidc.clients.broker_secret(broker.client_id) == broker_secret
    assert retired.signing.jwks()["keys"]  # the private key opens under the new master key alone
    assert retired.signing.active_key("RS256") is not None


# -- online: a running server through a rotation ---------------------------------


@pytest.mark.live
def test_a_running_server_follows_a_rotation_without_a_restart(instance):
    """Before: the running workers kept only the retired key; every TOTP login answered 500
    until a restart, and what they sealed meanwhile was under the retired key."""
    path, env = instance
    devices = {name: enrol_alice_like(env, name) for name in ("ann", "ben", "cat")}
    app, _ = app_for(env)
    with app.app_context():
        make_user(app.extensions["authserver"], "dan")  # no second factor yet: enrols while the server runs
    server = Instance(path, AUTHSERVER_LOG_LEVEL="WARNING").serve()
    try:
        def totp_login(name):
            return requests.post(server.url + "/api/session/login", timeout=10, json={
                "username": name, "password": DEFAULT_PASSWORD, "totp_code": devices[name].now()})

        assert totp_login("ann").status_code == 200
        rotated = run_cli(env, "master-key", "rotate", "--json")
        assert rotated.returncode == 0, rotated.stderr
        new_id = json.loads(rotated.stdout)["key_id"]

        assert totp_login("ben").status_code == 200  # opens what was re-sealed under the new key
        dan = requests.Session()
        assert dan.post(server.url + "/api/session/login", timeout=10,
                        json={"username": "dan", "password": DEFAULT_PASSWORD}).status_code == 200
        assert dan.post(server.url + "/api/me/totp", json={}, timeout=10).status_code == 200  # seals in the server

        assert run_cli(env, "master-key", "retire").returncode == 0
        check = run_cli(env, "master-key", "check", "--json")
        assert check.returncode == 0, check.stdout + check.stderr
        # Three active secrets and dan's pending one: all under the new key, none under the retired one.
        assert json.loads(check.stdout)["kinds"]["totp_secrets"] == {"by_key": {new_id: 4}, "not_opening": []}
        assert totp_login("cat").status_code == 200
        assert requests.get(server.url + "/readyz", timeout=10).json() == {"status": "ok", "database": "ok"}
    finally:
        server.stop()


def enrol_alice_like(env, username: str) -> pyotp.TOTP:
    """A user with TOTP enrolled; the authenticator app, on the real clock (the server's)."""
    app, clock = app_for(env)
    with app.app_context():
        svc = app.extensions["authserver"]
        device, _ = enrol_totp(svc, make_user(svc, username))
        return pyotp.TOTP(device.totp.secret)


def test_an_instance_without_the_sealing_key_is_not_ready_and_refuses_to_seal(app, services, settings, clock, db):
    # A rotation to a key this instance's keyring lacks (AUTHSERVER_MASTER_KEY not updated):
    # it must neither seal under a retired key nor answer 500.
    alice_id = make_user(services, "alice").id
    new_key = secrets.token_bytes(32)
    record_sealing_key(key_id(new_key), clock.now())
    db.session.commit()
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["master_key"] == f"missing key {key_id(new_key)}"
    login = client.post("/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert login.status_code == 200
    enrol = client.post("/api/me/totp", json={})
    assert enrol.status_code == 503 and enrol.json["error"] == "temporarily_unavailable"
    assert db.session.scalar(select(TotpCredential).where(TotpCredential.user_id == alice_id)) is None
    with pytest.raises(SealError):
        services.sealer.seal(b"x", b"context")
