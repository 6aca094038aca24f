"""Master-key rotation: every sealed value re-sealed in one transaction; TOTP logins keep working."""

import json
import secrets
import subprocess

import pytest
from sqlalchemy import text

from authserver import create_app
from authserver.crypto import SecretSealer, key_id
from authserver.schema import upgrade
from authserver.sealing import RotationFailed, rotate_master_key
from authserver.settings import Settings, decode_key
from tests.helpers.factories import DEFAULT_PASSWORD, Authenticator, enrol_totp, make_client, make_user
from tests.helpers.servers import cli_command, subprocess_env


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

    rotation = rotate_master_key(services.sealed, settings.master_keys, new_key)

    assert rotation.resealed["totp_secrets"] == 4
    assert rotation.retired_key_ids == [key_id(settings.master_keys[0])]
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


def test_a_value_that_does_not_open_stops_the_rotation_and_changes_nothing(services, settings, db):
    for _ in range(2):
        enrol_totp(services, make_user(services))
    stranger = SecretSealer([secrets.token_bytes(32)])
    last = db.session.execute(text("SELECT max(user_id) FROM totp_credentials")).scalar()
    db.session.execute(text("UPDATE totp_credentials SET totp_secret_sealed = :v WHERE user_id = :u"),
                       {"v": stranger.seal(b"x" * 20, f"totp-secret:user:{last}".encode()), "u": last})
    db.session.commit()
    before = sealed_values(db)
    with pytest.raises(RotationFailed, match="totp_credentials.totp_secret_sealed"):
        rotate_master_key(services.sealed, settings.master_keys, secrets.token_bytes(32))
    assert sealed_values(db) == before


def test_every_registered_kind_of_sealed_value_is_one_transaction(services, settings, db):
    enrol_totp(services, make_user(services))
    before = sealed_values(db)

    def values_that_fail(sealer):
        raise RotationFailed("failing_values: test value does not open")

    services.sealed.register("failing_values", values_that_fail)
    with pytest.raises(RotationFailed):
        rotate_master_key(services.sealed, settings.master_keys, secrets.token_bytes(32))
    assert sealed_values(db) == before  # the TOTP re-seal that ran first was rolled back


def test_registering_one_kind_twice_is_a_mistake(services):
    with pytest.raises(ValueError):
        services.sealed.register("totp_secrets", services.totp.reseal_all)


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


def totp_login_works(env, secret: str, **overrides) -> bool:
    app, clock = app_for(env, **overrides)
    with app.app_context():
        clock.advance(seconds=90)
        response = app.test_client().post("/api/session/login", json={
            "username": "alice", "password": DEFAULT_PASSWORD,
            "totp_code": Authenticator(secret, clock).code()})
        return response.status_code == 200


def test_cli_rotation_updates_the_instance_key_file(instance):
    path, env = instance
    key_file = path / "master_key"
    old_key = key_file.read_text().strip()
    device = enrol_alice(env)

    result = run_cli(env, "master-key", "rotate", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["resealed"]["totp_secrets"] == 1 and out["stored_in"] == str(key_file)
    assert "master_key" not in out  # written to its file, not printed
    new_key = key_file.read_text().strip()
    assert new_key != old_key and "," not in new_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert totp_login_works(env, device.totp.secret)


def test_cli_rotation_prints_a_generated_key_once_when_the_key_comes_from_the_environment(instance):
    path, env = instance
    old_key = (path / "master_key").read_text().strip()
    env = {**env, "AUTHSERVER_MASTER_KEY": old_key}
    device = enrol_alice(env)

    result = run_cli(env, "master-key", "rotate", "--json")

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["stored_in"] is None
    assert out["key_id"] == key_id(decode_key(out["master_key"], "MASTER_KEY"))
    assert (path / "master_key").read_text().strip() == old_key  # the environment is the operator's to change
    assert totp_login_works(env, device.totp.secret, AUTHSERVER_MASTER_KEY=out["master_key"])
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

    rotation = rotate_master_key(services.sealed, settings.master_keys, new_key)

    assert rotation.resealed["signing_keys"] == 1
    assert rotation.resealed["client_secrets"] == 1
    retired = create_app(settings.replace(master_keys=(new_key,)), clock=clock).extensions["authserver"]
    assert retired.oidc.clients.broker_secret(broker.client_id) == broker_secret
    assert retired.signing.jwks()["keys"]  # the private key opens under the new master key alone
    assert retired.signing.active_key("RS256") is not None
