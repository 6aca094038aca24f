"""Passkeys in a real Chromium with JavaScript on and a virtual platform authenticator (CDP
WebAuthn domain, user verification on): add a passkey on /account, sign out, sign in with password
+ passkey, then passwordless, then an OIDC client gets an ID token whose amr has hwk.

The issuer is http://localhost:PORT (a secure context, and a host name the browser accepts as
rp_id; 127.0.0.1 is not one), and the browser opens the site there.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from authserver import create_app
from tests.helpers.browser import ARTIFACTS, DUPLICATE_IDS, UNLABELLED, follow
from tests.helpers.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.helpers.oidc import decode_id_token, pkce_pair
from tests.helpers.servers import ROOT, serve_with_own_issuer
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def site(settings, tmp_path):
    def make_app(url):
        return create_app(make_settings(tmp_path / "instance", settings.database_url, issuer=url))

    with serve_with_own_issuer(make_app, host="localhost") as (app, url):
        yield app.extensions["authserver"], url


def shot(page, name: str) -> None:
    """A screenshot in test-artifacts/ (docs/screenshots/passkeys-*.png are copies of these; with
    AUTHSERVER_UPDATE_SCREENSHOTS=1 the test refreshes them); the page's markup checked."""
    assert page.evaluate(DUPLICATE_IDS) == [] and page.evaluate(UNLABELLED) == [], page.url
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"passkeys-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("AUTHSERVER_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, SCREENSHOTS / f"passkeys-{name}.png")


def me(page) -> dict:
    return page.evaluate("fetch('/api/me').then(r => r.json())")


def sign_out(page) -> None:
    follow(page.locator("header form[action='/logout'] button"))
    page.wait_for_url("**/login")


def test_register_then_password_and_passkey_then_passwordless_then_oidc_amr(browser, site):
    services, url = site
    make_user(services, "hana")
    # A native-app style loopback redirect: this same server at 127.0.0.1 answers it (404, with the code in the URL).
    callback = url.replace("localhost", "127.0.0.1") + "/callback"
    gallery, secret = make_client(services, "Holiday Photos", redirect_uris=(callback,), trusted=True)

    context = browser.new_context(base_url=url, java_script_enabled=True, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    csp_violations: list[str] = []
    page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True}})["authenticatorId"]

    # Password sign-in (no passkey yet), then a passkey on the account page.
    page.goto("/login")
    page.get_by_label("Username").fill("hana")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    follow(page.get_by_role("button", name="Sign in", exact=True))
    page.wait_for_url("**/account")
    section = page.locator("#passkeys")
    section.get_by_label("Name").fill("Hana's laptop")
    section.get_by_label("Current password").fill(DEFAULT_PASSWORD)
    with page.expect_navigation():
        section.get_by_role("button", name="Add a passkey").click()
    assert "Passkey added." in page.locator("#flash").inner_text()
    assert "Hana's laptop" in page.locator("#passkeys").inner_text()
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(credentials) == 1 and credentials[0]["isResidentCredential"]
    page.locator("#passkeys").scroll_into_view_if_needed()
    shot(page, "account")
    sign_out(page)

    # Password, then the passkey as the second step.
    page.get_by_label("Username").fill("hana")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    follow(page.get_by_role("button", name="Sign in", exact=True))
    page.wait_for_url("**/login/totp")
    shot(page, "second-step")
    with page.expect_navigation(url="**/account"):
        page.get_by_role("button", name="Use your passkey").click()
    identity = me(page)
    assert identity["auth_method"] == "password+passkey" and identity["amr"] == ["pwd", "hwk", "user", "mfa"]
    sign_out(page)

    # Passwordless: the discoverable passkey with user verification.
    shot(page, "login")
    with page.expect_navigation(url="**/account"):
        page.get_by_role("button", name="Sign in with a passkey").click()
    identity = me(page)
    assert identity["auth_method"] == "passkey" and identity["amr"] == ["hwk", "user", "mfa"]

    # An app asking for two factors gets them from this session: amr with hwk in its ID token.
    verifier, challenge = pkce_pair()
    page.goto("/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": gallery.client_id, "redirect_uri": callback, "scope": "openid",
        "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256",
        "acr_values": "2"}))
    page.wait_for_url(callback + "?**")
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    tokens = requests.post(f"{url}/oauth/token", auth=(gallery.client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": callback, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    claims = decode_id_token(services, tokens.json()["id_token"])
    assert "hwk" in claims["amr"] and claims["acr"] == "2"
    assert csp_violations == []
    context.close()
