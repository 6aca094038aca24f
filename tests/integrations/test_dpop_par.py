"""PAR + DPoP + PKCE with the client libraries that implement them (openid-client v6 and
oauth4webapi from npm, pinned), against a live server: the whole sign-in of a phone app, a
refresh with its key, userinfo with proofs; and the attacks made with the libraries' own
proofs (a stolen bound token, a replayed proof, a proof for another URL or method, a stale
iat), a request_uri used twice or by another client, a push with a bad redirect URI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from authserver.extensions import db
from authserver.oidc.models import OAuthToken, PushedRequest
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.helpers.html import form_action
from tests.helpers.node import npm_driver
from tests.helpers.servers import app_at_own_issuer

pytestmark = pytest.mark.live

DRIVER = Path(__file__).parent / "dpop"
REDIRECT = "app.gallery:///oauth-callback"


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    return npm_driver(DRIVER, tmp_path_factory.mktemp("dpop"))


@pytest.fixture
def live(backend, database_urls, tmp_path):
    with app_at_own_issuer(database_urls[backend], tmp_path) as served:
        yield served


class Browser:
    """The person's browser: signed in, following the app's authorization URL, consenting."""

    def __init__(self, url: str, username: str):
        self.url = url
        self.http = requests.Session()
        answer = self.http.post(url + "/api/session/login", json={"username": username, "password": DEFAULT_PASSWORD},
                                timeout=10)
        assert answer.status_code == 200

    def follow(self, authorization_url: str) -> dict:
        answer = self.http.get(authorization_url, allow_redirects=False, timeout=10)
        if answer.status_code == 200 and "csrf_token" in answer.text:
            answer = self.http.post(self.url + form_action(answer.text), allow_redirects=False, timeout=10,
                                    data={"csrf_token": csrf_token(answer.text), "allow": "x"})
        return {"status": answer.status_code, "location": answer.headers.get("Location"),
                "text": answer.text[:2000] if answer.status_code >= 400 else ""}


def run_driver(driver: Path, config: dict, browser: Browser) -> dict:
    """The driver in its own process; its browse requests answered by `browser`, line by line."""
    process = subprocess.Popen(["node", "dpop_par_flow.mjs", json.dumps(config)], cwd=driver, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"the driver stopped: {process.wait(timeout=10)} {process.stderr.read()[-3000:]}")
            message = json.loads(line)
            if "results" in message:
                return message["results"]
            process.stdin.write(json.dumps(browser.follow(message["browse"])) + "\n")
            process.stdin.flush()
    finally:
        process.kill()
        process.wait(timeout=10)


def refused_with(outcome: dict, status: int, error: str) -> bool:
    return outcome["status"] == status and f'error="{error}"' in (outcome["challenge"] or "")


def test_a_phone_app_signs_in_with_par_dpop_and_pkce_and_stolen_tokens_are_useless(driver, live):
    services, url = live
    make_user(services, "alice")
    phone, _ = make_client(services, "Phone gallery", public=True, redirect_uris=[REDIRECT],
                           scope="openid profile email offline_access", require_par=True, require_dpop=True)
    other, _ = make_client(services, "Other phone app", public=True, redirect_uris=[REDIRECT], scope="openid")
    config = {"issuer": url, "clientId": phone.client_id, "otherClientId": other.client_id, "redirectUri": REDIRECT,
              "scope": "openid profile email offline_access"}

    results = run_driver(driver, config, Browser(url, "alice"))

    # The front channel carried the reference only.
    assert set(results["authorizationUrl"].split("?", 1)[1].split("&")) >= {f"client_id={phone.client_id}"}
    assert "redirect_uri" not in results["authorizationUrl"] and "request_uri=" in results["authorizationUrl"]
    assert results["tokenType"].lower() == "dpop" and results["hasRefresh"]
    assert results["userinfo"]["preferred_username"] == "alice"
    assert results["refreshedTokenType"].lower() == "dpop" and results["userinfoAfterRefresh"]
    assert results["oauth4webapiUserinfo"] == 200
    rows = db.session.scalars(select(OAuthToken).where(OAuthToken.client_id == phone.client_id)).all()
    assert rows and all(row.dpop_jkt for row in rows)
    assert len({row.dpop_jkt for row in rows}) == 1  # one key: the phone's

    # Attacks.
    for name in ("stolenAsBearer", "stolenWithAnotherKey"):
        outcome = results[name]
        assert outcome["ok"] is False and outcome["status"] == 401, (name, outcome)
    assert results["stolenRefresh"]["ok"] is False and results["stolenRefresh"]["error"] == "invalid_dpop_proof"
    assert refused_with(results["replayedProof"], 401, "invalid_dpop_proof")
    assert "used before" in results["replayedProof"]["challenge"]
    assert refused_with(results["proofForAnotherUrl"], 401, "invalid_dpop_proof")
    assert "another URL" in results["proofForAnotherUrl"]["challenge"]
    assert refused_with(results["proofForAnotherMethod"], 401, "invalid_dpop_proof")
    assert "another method" in results["proofForAnotherMethod"]["challenge"]
    assert refused_with(results["staleIat"], 401, "invalid_dpop_proof") and "iat" in results["staleIat"]["challenge"]
    assert results["requestUriAgain"]["status"] == 400 and "used already" in results["requestUriAgain"]["text"]
    assert results["requestUriOfAnotherClient"]["status"] == 400
    assert "another client" in results["requestUriOfAnotherClient"]["text"]
    assert results["badRedirect"]["ok"] is False and results["badRedirect"]["error"] == "invalid_request"
    pushed = db.session.scalars(select(PushedRequest)).all()
    assert len(pushed) == 2 and all(("dpop_jkt", rows[0].dpop_jkt) in map(tuple, row.params) for row in pushed)
