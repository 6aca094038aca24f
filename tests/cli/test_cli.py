"""The `authserver` command line: db upgrade, user create, seed."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import create_engine, inspect

from authserver import create_app
from authserver.settings import Settings
from tests.helpers.servers import Instance


@pytest.fixture
def inst(tmp_path):
    inst = Instance(tmp_path / "instance")
    upgraded = inst.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return inst


@pytest.fixture(scope="module")
def inst_with_alice(tmp_path_factory):
    """Refusals change nothing, so their cases share one instance."""
    inst = Instance(tmp_path_factory.mktemp("cli") / "instance")
    assert inst.cli("db", "upgrade").returncode == 0
    assert inst.cli("user", "create", "alice", "--email", "alice@photos.example").returncode == 0
    return inst


def check_login(inst: Instance, username: str, password: str):
    """The user as the server sees it, after checking the password the CLI handed out."""
    app = create_app(Settings.from_env({k: v for k, v in inst.env.items() if k.startswith("AUTHSERVER_")}))
    with app.app_context():
        user = app.extensions["authserver"].accounts.check_password(username, password)
        return {"username": user.username, "name": user.name, "email": user.email, "is_admin": user.is_admin}


def test_db_upgrade_builds_the_schema_from_empty(inst):
    engine = create_engine(f"sqlite:///{inst.path / 'authserver.db'}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"alembic_version", "users", "sso_sessions", "audit_events"} <= tables
    again = inst.cli("db", "upgrade")
    assert again.returncode == 0, again.stderr


def test_user_create_json_prints_a_generated_password_once(inst):
    done = inst.cli("user", "create", "alice", "--email", "alice@photos.example", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert set(created) >= {"id", "username", "password"} and created["username"] == "alice"
    password = created["password"]
    assert len(password) >= 16
    assert (done.stdout + done.stderr).count(password) == 1
    assert check_login(inst, "alice", password)["is_admin"] is False


def test_user_create_respects_password_admin_and_name(inst):
    done = inst.cli("user", "create", "Bob", "--email", "bob@photos.example", "--name", "Bob Bobson",
                    "--password", "a chosen passphrase", "--admin", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert "password" not in created
    assert "a chosen passphrase" not in done.stdout + done.stderr
    assert check_login(inst, "bob", "a chosen passphrase") == {
        "username": "Bob", "name": "Bob Bobson", "email": "bob@photos.example", "is_admin": True,
    }


def test_user_create_plain_output_names_the_user(inst):
    done = inst.cli("user", "create", "carol", "--email", "carol@photos.example")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created user carol (id ")
    password = re.search(r"password: (\S+)", done.stdout).group(1)
    assert check_login(inst, "carol", password)


@pytest.mark.parametrize(
    "args,message",
    [
        (["ALICE", "--email", "other@photos.example"], 'The username "ALICE" is taken.'),
        (["dave", "--email", "not-an-address"], "The email address is not valid."),
        (["erin", "--email", "erin@photos.example", "--password", "short"], "A password has 8 to 1024 characters."),
        (["pkid-20260101-x", "--email", "k@photos.example"], 'may not start with "pkid-"'),
    ],
)
def test_user_create_refusals_exit_1_with_a_message(inst_with_alice, args, message):
    done = inst_with_alice.cli("user", "create", *args, "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("authserver: ")] == [lines[-1]]


def test_seed_prints_credentials_once_and_never_reseeds(inst):
    first = inst.cli("seed", "--url", "http://127.0.0.1:5000")
    assert first.returncode == 0, first.stderr
    password = re.search(r"admin password : (\S+)", first.stdout).group(1)
    assert "http://127.0.0.1:5000/login" in first.stdout
    assert check_login(inst, "admin", password)["is_admin"] is True

    second = inst.cli("seed", "--url", "http://127.0.0.1:5000")
    assert second.returncode == 0, second.stderr
    assert "password" not in second.stdout + second.stderr
    assert "already set up" in second.stdout
    assert check_login(inst, "admin", password)  # the first password still works: nothing was re-seeded
    duplicate = inst.cli("user", "create", "admin", "--email", "x@photos.example")
    assert duplicate.returncode == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--name", "Gallery"], "A client named 'Gallery' exists already"),
        (["--name", "Other", "--scope", "openid photos:admin"],
         "Unknown scope 'photos:admin'; a client may hold openid profile email groups offline_access photos:read"),
    ],
    ids=["duplicate name", "unknown scope"],
)
def test_client_create_refusals_exit_1_with_one_line(inst_with_alice, args, message):
    if inst_with_alice.cli("client", "create", "--name", "Gallery", "--redirect-uri",
                           "https://gallery.example/cb").returncode not in (0, 1):
        pytest.fail("the first client could not be created")
    done = inst_with_alice.cli("client", "create", *args, "--redirect-uri", "https://gallery.example/cb", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("authserver: ")] == [lines[-1]]


def test_a_deleted_clients_name_can_be_used_again(services):
    from tests.helpers.factories import make_client

    first, _ = make_client(services, "Gallery")
    services.oidc.clients.delete(first.client_id, actor="test")
    second, _ = make_client(services, "Gallery")
    assert second.client_id != first.client_id


def test_help_shows_only_what_an_operator_runs(inst):
    top = inst.cli("--help")
    assert top.returncode == 0
    for flask_option in ("--env-file", "--app", "--debug"):
        assert flask_option not in top.stdout
    assert re.findall(r"^  ([a-z-]+)\s", top.stdout.split("Commands:")[1], re.MULTILINE) == [
        "after-restore", "client", "db", "key", "mail", "master-key", "passkey", "seed", "serve", "signing-key", "totp",
        "user"]
    schema = inst.cli("db", "--help")
    commands = schema.stdout.split("Commands:")[1]
    assert re.findall(r"^  ([a-z-]+)\s", commands, re.MULTILINE) == ["current", "upgrade"]
    for developer_command in ("migrate", "init", "revision", "downgrade", "stamp"):
        refused = inst.cli("db", developer_command)
        assert refused.returncode == 2 and "No such command" in refused.stderr
    current = inst.cli("db", "current")
    assert current.returncode == 0 and "(head)" in current.stdout


def test_after_restore_ends_sessions_and_switches_signing_keys(inst):
    rotated = json.loads(inst.cli("signing-key", "rotate", "--now", "--json").stdout)
    done = inst.cli("after-restore", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ended_sessions"] == 0 and report["revoked_tokens"] == 0
    assert rotated["kids"][0] in report["withdrawn_keys"] and rotated["kids"][0] not in report["signing_keys"]


@pytest.mark.parametrize("grant", ["device_code", "urn:ietf:params:oauth:grant-type:device_code"])
def test_client_create_registers_a_device_client_by_the_short_or_the_full_grant_name(inst_with_alice, grant):
    done = inst_with_alice.cli("client", "create", "--name", f"Frame {len(grant)}", "--public", "--grant", grant,
                               "--scope", "openid profile", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["grant_types"] == ["urn:ietf:params:oauth:grant-type:device_code"]
    assert created["redirect_uris"] == []  # a device needs none


@pytest.mark.parametrize("args,message", [
    (["--group", "family\nX-Injected: 1"], "is not a group name"),
    (["--group", "two words"], "is not a group name"),
    (["--name", "Bo\x1b[31m"], "no control characters"),
    (["--email", "bo@photos.example\r\nBcc: x@y"], "The email address is not valid"),
], ids=["group with a newline", "group with a space", "name with an escape", "email with a newline"])
def test_user_create_refuses_what_tokens_and_headers_cannot_carry(inst_with_alice, args, message):
    base = {"--email": "bo@photos.example"}
    flags = [item for pair in base.items() if pair[0] not in args for item in pair]
    done = inst_with_alice.cli("user", "create", "bo", *flags, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
