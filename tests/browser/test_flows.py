"""The pages as people use them, in a real Chromium with JavaScript off, over real HTTP."""

from __future__ import annotations

import pyotp
import pytest
import requests

from tests.helpers.browser import PHONE, follow
from tests.helpers.factories import DEFAULT_PASSWORD, make_key, make_user
from tests.helpers.oidc import pkce_pair

pytestmark = pytest.mark.browser

WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth)
  .map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))
  .slice(0, 8)"""


def sign_in(b, username: str, password: str = DEFAULT_PASSWORD):
    page = b.page
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    follow(page.get_by_role("button", name="Sign in"))


def sign_out(b):
    follow(b.page.locator("header form[action='/logout'] button"))
    b.page.wait_for_url("**/login")


def test_admin_creates_a_user_who_then_signs_in(browsing, services):
    make_user(services, "root", admin=True)
    admin = browsing()
    page = admin.page
    page.goto("/admin/users")
    assert page.url.endswith("/login?next=/admin/users")
    admin.shot("login")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("wrong password")
    follow(page.get_by_role("button", name="Sign in"))
    assert "not correct" in page.locator("#login-error").inner_text()
    assert page.get_by_label("Username").get_attribute("aria-describedby") == "login-error"
    admin.shot("login-error")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    follow(page.get_by_role("button", name="Sign in"))
    page.wait_for_url("**/admin/users")

    form = page.locator("form[action='/admin/users'][method='post']")
    form.get_by_label("Username").fill("dora")
    form.get_by_label("Display name").fill("Dora Explorer")
    form.get_by_label("Email").fill("not-an-address")
    form.get_by_label("Groups").fill("family, photos")
    follow(form.get_by_role("button", name="Create user"))
    email = page.locator("form[action='/admin/users'][method='post']").get_by_label("Email")
    assert email.get_attribute("aria-invalid") == "true"
    assert "email address" in page.locator("#email-error").inner_text()
    email.fill("dora@photos.example")
    follow(page.locator("form[action='/admin/users'][method='post']").get_by_role("button", name="Create user"))
    password = page.locator("#generated-password").input_value()
    assert page.locator("#user-name").inner_text() == "dora"
    admin.shot("user-created")
    page.goto("/admin/users")
    assert page.locator("tr[data-username='dora']").count() == 1
    admin.shot("admin-users")

    user = browsing()
    sign_in(user, "dora", password)
    user.page.wait_for_url("**/account")
    assert user.page.locator("#account-username").inner_text() == "dora"
    assert "family, photos" in user.page.locator("#profile").inner_text()
    user.shot("account")


def test_a_non_admin_gets_403_on_the_admin_console(browsing, services):
    make_user(services, "carol")
    b = browsing()
    sign_in(b, "carol")
    b.page.wait_for_url("**/account")
    assert b.page.locator("header nav a[href='/admin']").count() == 0
    response = b.page.goto("/admin")
    assert response.status == 403
    assert "administrators" in b.page.locator("main").inner_text()
    b.shot("forbidden")


def test_user_enrols_totp_then_signs_in_with_a_code_and_with_a_recovery_code(browsing, services, clock):
    make_user(services, "erin")
    b = browsing()
    page = b.page
    sign_in(b, "erin")
    page.wait_for_url("**/account")
    follow(page.locator("#totp-section a"))
    follow(page.get_by_role("button", name="Set up two-factor authentication"))
    secret = page.locator("#totp-secret").inner_text().strip()
    assert page.locator("#totp-qr svg").count() == 1
    b.shot("totp-enrolment")
    authenticator = pyotp.TOTP(secret)

    def code() -> str:
        return authenticator.at(clock.now().timestamp())

    page.get_by_label("Code from the app").fill("000000" if code() != "000000" else "111111")
    follow(page.get_by_role("button", name="Turn on two-factor authentication"))
    assert "not correct" in page.locator("#enrol-error").inner_text()
    page.get_by_label("Code from the app").fill(code())
    follow(page.get_by_role("button", name="Turn on two-factor authentication"))
    recovery_codes = [c.strip() for c in page.locator("#recovery-codes li").all_inner_texts()]
    assert len(recovery_codes) == 10
    b.shot("recovery-codes")
    follow(page.locator("#continue"))
    assert page.locator("#recovery-left").inner_text() == "10"
    sign_out(b)

    clock.advance(seconds=30)  # the enrolment spent this time step's code
    sign_in(b, "erin")
    page.wait_for_url("**/login/totp")
    code_field = page.get_by_label("Code", exact=True)
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    b.shot("login-totp")
    code_field.fill(code())
    follow(page.get_by_role("button", name="Verify"))
    page.wait_for_url("**/account")
    assert "password+totp" in page.locator("#profile").inner_text()
    sign_out(b)

    sign_in(b, "erin")
    page.wait_for_url("**/login/totp")
    page.get_by_label("Code", exact=True).fill(code())  # the same step again: refused
    follow(page.get_by_role("button", name="Verify"))
    assert "already used" in page.locator("#totp-error").inner_text()
    page.get_by_text("Use a recovery code").click()
    page.get_by_label("Recovery code").fill("not-a-code")
    follow(page.get_by_role("button", name="Use recovery code"))
    recovery = page.get_by_label("Recovery code")
    assert recovery.is_visible() and "recovery-error" in recovery.get_attribute("aria-describedby")
    assert "not correct" in page.locator("#recovery-error").inner_text()
    b.shot("login-recovery-code")
    recovery.fill(recovery_codes[0])
    follow(page.get_by_role("button", name="Use recovery code"))
    page.wait_for_url("**/account")
    page.goto("/account/totp")
    assert page.locator("#recovery-left").inner_text() == "9"


def test_user_mints_rotates_and_revokes_a_key_and_old_secrets_stop_working(browsing, services, live_server):
    make_user(services, "frank")
    b = browsing()
    page = b.page
    sign_in(b, "frank")
    page.wait_for_url("**/account")
    follow(page.locator("#keys a[href='/account/keys']"))
    page.get_by_label("Name").fill("lightroom")
    page.get_by_label("photos:write").uncheck()
    follow(page.get_by_role("button", name="Mint"))
    first = page.locator("#minted-token").input_value()
    key_id = first.split(":")[0]
    b.shot("account-keys")

    def me(token: str) -> int:
        return requests.get(f"{live_server.url}/api/me", headers={"X-API-Key": token}, timeout=10).status_code

    assert me(first) == 200
    row = page.locator(f"tr[data-key-id='{key_id}']")
    row.get_by_label("Grace (s)").fill("0")
    follow(row.get_by_role("button", name="Rotate"))
    second = page.locator("#minted-token").input_value()
    assert second.split(":")[0] == key_id and second != first
    assert me(first) == 401 and me(second) == 200

    row = page.locator(f"tr[data-key-id='{key_id}']")
    follow(row.get_by_role("button", name="Revoke"))  # without the box ticked: refused, and said why
    assert page.locator("[id$='-error']").first.inner_text() == "Tick the box to confirm."
    assert me(second) == 200
    row = page.locator(f"tr[data-key-id='{key_id}']")
    row.get_by_label("Yes, revoke lightroom").check()
    follow(row.get_by_role("button", name="Revoke"))
    assert "revoked" in page.locator(f"tr[data-key-id='{key_id}']").inner_text()
    assert me(second) == 401


def test_admin_sees_every_key_the_audit_log_and_rotates_signing_keys(browsing, services):
    make_user(services, "root", admin=True)
    gina = make_user(services, "gina")
    make_key(services, gina, name="uploader")
    b = browsing()
    sign_in(b, "root")
    page = b.page
    page.goto("/admin/keys")
    assert "uploader" in page.locator("#keys").inner_text()
    b.shot("admin-keys")
    page.goto("/admin/audit?action=key.")
    assert "key.mint" in page.locator("table.events").inner_text()
    b.shot("admin-audit")

    page.goto("/oauth/jwks")  # the first key is made on first need
    page.goto("/admin/signing-keys")
    follow(page.get_by_role("button", name="Rotate signing keys"))  # box not ticked: refused
    assert page.locator("#confirm-rotate-error").inner_text() == "Tick the box to confirm."
    page.get_by_label("Yes, rotate the signing keys").check()
    follow(page.get_by_role("button", name="Rotate signing keys"))
    assert "New signing keys" in page.locator("#flash").inner_text()
    # Three algorithms, each with the key that signs and the one published to follow it.
    assert page.locator("#signing-keys tbody tr").count() == 6
    b.shot("admin-signing-keys")
    page.goto("/admin")
    assert "signing_key.rotate" in page.locator("table.events").inner_text()
    b.shot("admin-overview")


def test_pages_fit_a_phone_screen_with_unique_ids_and_labelled_fields(browsing, services):
    make_user(services, "root", admin=True)
    b = browsing(viewport=PHONE)
    sign_in(b, "root")
    b.page.wait_for_url("**/account")
    for path in ("/account", "/account/keys", "/account/totp", "/admin", "/admin/users", "/admin/keys", "/admin/audit"):
        b.page.goto(path)
        assert b.fits_the_screen(), (path, b.page.evaluate(WIDEST))
        b.check_markup()
    b.page.goto("/account")
    b.shot("account-phone")


def register_client_in_the_console(admin, redirect_uri: str) -> tuple[str, str]:
    """The admin registers a confidential client on /admin/clients; answers (client_id, secret)."""
    page = admin.page
    page.goto("/admin/clients")
    form = page.locator("form[action='/admin/clients']")
    form.get_by_label("Name", exact=True).fill("Holiday Photos")
    form.get_by_label("Redirect URIs").fill(redirect_uri)
    form.get_by_label("Scopes it may ask for").fill("openid profile email")
    form.get_by_label("Extra claims").fill("gallery_role=admin_flag:admin:viewer")
    follow(form.get_by_role("button", name="Register client"))
    client_id = page.locator("#client-id-value").input_value()
    secret = page.locator("#client-secret").input_value()
    admin.shot("client-created")
    page.goto("/admin/clients")
    assert page.locator(f"tr[data-client-id='{client_id}']").count() == 1
    admin.shot("admin-clients")
    return client_id, secret


def test_consent_deny_then_allow_through_a_real_oidc_redirect(browsing, services, live_server):
    from urllib.parse import parse_qs, urlencode, urlsplit

    make_user(services, "root", admin=True)
    make_user(services, "hana")
    redirect_uri = f"{live_server.url}/callback"
    admin = browsing()
    sign_in(admin, "root")
    admin.page.wait_for_url("**/account")
    client_id, secret = register_client_in_the_console(admin, redirect_uri)

    user = browsing()
    page = user.page

    def authorize(state: str) -> dict:
        verifier, challenge = pkce_pair()
        page.goto("/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid profile",
            "state": state, "nonce": state + "-nonce", "code_challenge": challenge, "code_challenge_method": "S256",
        }))
        return {"verifier": verifier}

    authorize("first")
    assert urlsplit(page.url).path == "/login"  # sent to sign in first, then back to the request
    page.get_by_label("Username").fill("hana")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    follow(page.get_by_role("button", name="Sign in"))
    assert page.locator("#consent-client").inner_text() == "Holiday Photos"
    user.shot("consent")
    follow(page.locator("#consent-deny"))
    page.wait_for_url(redirect_uri + "?**")
    denied = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert denied["error"] == "access_denied" and denied["state"] == "first" and "code" not in denied

    pkce = authorize("second")
    assert page.locator("#consent-client").inner_text() == "Holiday Photos"
    follow(page.locator("#consent-allow"))
    page.wait_for_url(redirect_uri + "?**")
    allowed = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert allowed["state"] == "second" and allowed["code"]
    tokens = requests.post(f"{live_server.url}/oauth/token", auth=(client_id, secret), timeout=10, data={
        "grant_type": "authorization_code", "code": allowed["code"], "redirect_uri": redirect_uri,
        "code_verifier": pkce["verifier"],
    })
    assert tokens.status_code == 200 and tokens.json()["id_token"]
    me = requests.get(f"{live_server.url}/oauth/userinfo", timeout=10,
                      headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert me.json()["preferred_username"] == "hana"

    page.goto("/account")
    apps = page.locator("#connected-apps")
    assert "Holiday Photos" in apps.inner_text()
    user.shot("connected-apps")
    follow(apps.get_by_role("button", name="Revoke access"))
    assert "No apps have access" in page.locator("#connected-apps").inner_text()
    assert requests.get(f"{live_server.url}/oauth/userinfo", timeout=10, headers={
        "Authorization": f"Bearer {tokens.json()['access_token']}"}).status_code == 401
