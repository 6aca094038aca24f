"""Schemathesis against a live `authserver serve` (Granian, the fast dispatch included): every
operation of /api/openapi.json, with data generated from the document and data that breaks it,
once as a signed-in browser session (with its Origin, as a page of this site sends) and once with
an API key. No answer may be a 5xx, and every answer must conform to the document: status code,
content type, headers and body schema; invalid data must be refused.

Bounded and repeatable: a fixed seed, one worker, 50 examples per operation and phase (about
3,500 requests, 20-40 s per run). A run whose credentials were refused everywhere fails too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers.servers import Instance

pytestmark = pytest.mark.fuzz

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection",
])
PASSWORD = "fuzzing is a kind of testing"


def schemathesis() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return [found]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = Instance(tmp_path_factory.mktemp("fuzz") / "instance")
    assert inst.cli("db", "upgrade").returncode == 0
    created = inst.cli("user", "create", "alice", "--email", "alice@photos.example", "--password", PASSWORD,
                       "--admin", "--json")
    assert created.returncode == 0, created.stderr
    # Every scope there is, admin included: the key must reach every operation a session reaches.
    minted = inst.cli("key", "mint", "--user", "alice", "--name", "fuzzer", "--scope", "admin", "--scope", "profile",
                      "--scope", "photos:read", "--scope", "photos:write", "--json")
    assert minted.returncode == 0, minted.stderr
    inst.key = json.loads(minted.stdout)
    inst.serve()
    # Signed in before any fuzzing: the fuzzed logins (the document's examples name alice) throttle hers.
    login = requests.post(inst.url + "/api/session/login", json={"username": "alice", "password": PASSWORD},
                          timeout=10)
    assert login.status_code == 200, login.text
    inst.cookie = "; ".join(f"{c.name}={c.value}" for c in login.cookies)
    yield inst
    inst.stop()


def run(server, tmp_path, *headers: str, exclude: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [*schemathesis(), "run", server.url + "/api/openapi.json", "--checks", CHECKS, "--seed", "20261130",
            "--max-examples", "50", "--request-timeout", "10", "--workers", "1",
            "--suppress-health-check", "all", "--report", "junit", "--report-dir", str(tmp_path),
            "--output-truncate", "false"]
    for header in headers:
        args += ["-H", header]
    for operation in exclude:
        args += ["--exclude-operation-id", operation]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)


def assert_clean(done: subprocess.CompletedProcess, server, *, refused_by_design: frozenset = frozenset()) -> None:
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-4000:]
    assert " passed" in done.stdout and " 0 generated" not in done.stdout, done.stdout[-6000:]
    # The run reached the operations: none answered only 401/403, but those that refuse this
    # credential by design.
    refused = set(re.findall(r"^\s+- ([A-Z]+ /\S+)$", _section(done.stdout, "Authentication failed")))
    assert refused <= refused_by_design, done.stdout[-6000:]
    log = server.server_log()
    assert "Traceback" not in log and '"status": 500' not in log, log[-8000:]


def _section(output: str, title: str) -> str:
    """The lines of one warning of schemathesis's summary (up to its hint), or ""."""
    start = output.find(title)
    return output[start:output.find("💡", start)] if start >= 0 else ""


# A key never manages the second factor (a leaked key must not remove it): 403 by design.
TOTP_OPERATIONS = frozenset({"GET /api/me/totp", "POST /api/me/totp", "DELETE /api/me/totp",
                             "POST /api/me/totp/confirm", "POST /api/me/totp/recovery-codes"})


def test_every_operation_with_an_api_key(server, tmp_path):
    key = server.key
    # Rotating or revoking the fuzzing key itself (the stateful phase finds its id) would end the
    # run's credential: those two are fuzzed with the session below.
    done = run(server, tmp_path, f"X-API-Key: {key['key_id']}:{key['secret']}", exclude=("rotateKey", "revokeKey"))
    assert_clean(done, server, refused_by_design=TOTP_OPERATIONS)


def test_every_operation_as_a_signed_in_browser_session(server, tmp_path):
    # Logging out would end the session the rest of the run uses; it is fuzzed with the key.
    done = run(server, tmp_path, f"Cookie: {server.cookie}", f"Origin: {server.url}", exclude=("logout",))
    assert_clean(done, server)
