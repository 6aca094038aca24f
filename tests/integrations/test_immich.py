"""Immich's side of the sign-in, with the library and options Immich's server uses (openid-client
v6 from npm: discovery, client_secret_post, PKCE only when discovery offers S256, no nonce, the
code grant, the ID token's claims or else userinfo without the subject check), against a live
server registered as docs/integrations/immich.md says; for the web and the mobile redirect."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import requests

from authserver.extensions import db
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_user
from tests.helpers.html import form_action
from tests.helpers.node import npm_driver
from tests.helpers.servers import app_at_own_issuer

pytestmark = pytest.mark.live

DRIVER = Path(__file__).parent / "immich"
WEB_REDIRECT = "https://photos.example/auth/login"
MOBILE_REDIRECT = "app.immich:///oauth-callback"


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    """The driver with its pinned packages (`npm ci` from the lock file) in a folder of its own."""
    return npm_driver(DRIVER, tmp_path_factory.mktemp("immich"))


@pytest.fixture
def live(backend, database_urls, tmp_path):
    with app_at_own_issuer(database_urls[backend], tmp_path) as served:
        yield served


def immich(driver: Path, *args: str) -> dict:
    done = subprocess.run(["node", "immich_login.mjs", *args], cwd=driver, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "immich.md"


def guide_command() -> dict[str, list[str]]:
    """The options of the guide's `authserver client create` command, as the shell would split them."""
    text = GUIDE.read_text()
    start = text.index("authserver client create")
    command = text[start:text.index("\n#", start)].replace("\\\n", " ")
    options: dict[str, list[str]] = {}
    words = shlex.split(command)[3:]
    for flag, value in zip(words[::2], words[1::2], strict=True):
        options.setdefault(flag, []).append(value)
    return options


def register_immich(services):
    """The registration docs/integrations/immich.md makes, read from its command."""
    options = guide_command()
    created = services.oidc.clients.create(
        name=options["--name"][0], redirect_uris=options["--redirect-uri"], scope=options["--scope"][0],
        token_endpoint_auth_method=options["--auth-method"][0], extra_claims=options["--extra-claim"],
        backchannel_logout_uri=options["--backchannel-logout-uri"][0], actor="test")
    assert set(options) == {"--name", "--redirect-uri", "--scope", "--auth-method", "--extra-claim",
                            "--backchannel-logout-uri"}, "the guide's command has an option this test does not apply"
    assert {WEB_REDIRECT, MOBILE_REDIRECT} <= set(options["--redirect-uri"])
    return created.row.client_id, created.client_secret


def sign_in(url: str, username: str, authorization_url: str) -> str:
    """A browser signed in as `username` following Immich's authorization URL; the redirect it lands on."""
    http = requests.Session()
    assert http.post(url + "/api/session/login", json={"username": username, "password": DEFAULT_PASSWORD},
                     timeout=10).status_code == 200
    answer = http.get(authorization_url, allow_redirects=False, timeout=10)
    if answer.status_code == 200:  # consent, the first time
        answer = http.post(url + form_action(answer.text), data={"csrf_token": csrf_token(answer.text), "allow": "x"},
                           allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["Location"]


@pytest.mark.parametrize("redirect_uri", [WEB_REDIRECT, MOBILE_REDIRECT], ids=["web", "mobile app"])
def test_immich_signs_users_in_and_reads_role_and_quota(driver, live, redirect_uri):
    services, url = live
    admin = make_user(services, "alice", admin=True)
    admin.attributes = {"quota_gb": 50}
    db.session.commit()
    make_user(services, "bob")
    client_id, secret = register_immich(services)
    config = json.dumps({"issuerUrl": url, "clientId": client_id, "clientSecret": secret, "signingAlgorithm": "RS256",
                         "scope": guide_command()["--scope"][0], "redirectUri": redirect_uri})
    for username, role, quota in (("alice", "admin", 50), ("bob", "user", None)):
        started = immich(driver, "authorize", config)
        assert "code_challenge=" in started["url"] and "nonce=" not in started["url"]
        landed = sign_in(url, username, started["url"])
        assert landed.startswith(redirect_uri + "?")
        done = immich(driver, "callback", config, json.dumps({"url": landed, "state": started["state"],
                                                              "codeVerifier": started["codeVerifier"]}))
        profile = done["profile"]
        assert done["fromIdToken"] is True  # the ID token carries the email: Immich reads it, not userinfo
        assert profile["preferred_username"] == username and profile["email"] == f"{username}@photos.example"
        assert profile["immich_role"] == role and profile.get("immich_quota") == quota
        assert done["sid"]  # for back-channel logout
