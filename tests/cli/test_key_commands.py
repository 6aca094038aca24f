"""`authserver key mint|rotate|revoke|list --json`, run as a real process against a real database."""

import json
import subprocess

import pytest

from tests.helpers.servers import cli_command, subprocess_env


@pytest.fixture
def run(tmp_path):
    env = subprocess_env(AUTHSERVER_INSTANCE_PATH=str(tmp_path), AUTHSERVER_LOG_LEVEL="WARNING")

    def run(*args, check=True):
        result = subprocess.run([*cli_command(), *args], check=False, env=env, capture_output=True, text=True,
                                timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    run("db", "upgrade")
    run("user", "create", "alice", "--email", "alice@photos.example", "--password", "correct horse battery")
    return run


def test_mint_rotate_revoke_list(run):
    minted = json.loads(run("key", "mint", "--user", "alice", "--name", "lightroom", "--scope", "photos:read",
                            "--scope", "photos:write", "--expires-in", "30", "--cidr", "192.0.2.0/24",
                            "--json").stdout)
    assert set(minted) == {"key_id", "secret"}
    assert minted["key_id"].startswith("pkid-") and len(minted["secret"]) == 43

    listed = json.loads(run("key", "list", "--user", "alice", "--json").stdout)["keys"]
    assert [(k["key_id"], k["scopes"], k["allowed_cidrs"]) for k in listed] == [
        (minted["key_id"], ["photos:read", "photos:write"], ["192.0.2.0/24"])
    ]
    assert minted["secret"] not in json.dumps(listed)

    rotated = json.loads(run("key", "rotate", minted["key_id"], "--grace-seconds", "60", "--json").stdout)
    assert rotated["key_id"] == minted["key_id"] and rotated["secret"] != minted["secret"]

    revoked = json.loads(run("key", "revoke", minted["key_id"], "--json").stdout)
    assert revoked == {"key_id": minted["key_id"], "revoked": True, "already_revoked": False}
    assert json.loads(run("key", "list", "--json").stdout)["keys"][0]["status"] == "revoked"


@pytest.mark.parametrize("args,message", [
    (["key", "mint", "--user", "bob", "--name", "x"], 'no user "bob"'),
    (["key", "mint", "--user", "alice", "--name", "x", "--scope", "admin"], "administrators only"),
    (["key", "mint", "--user", "alice", "--name", "x", "--cidr", "nope"], "not an address range"),
    (["key", "revoke", "pkid-20260101-AAAAAAAAAAAAAAAAAAAAA"], "no key"),
    (["key", "rotate", "garbage"], "no key"),
])
def test_errors_are_one_line_and_nonzero(run, args, message):
    result = run(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
