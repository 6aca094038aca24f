"""Apache httpd with Debian's mod_auth_openidc in front of a photo site, against a live server.

Apache runs config/examples/apache-openidc.conf with only its Define values set (tests/helpers/
apache.py); the clients and the key are made by the commands of docs/integrations/apache.md, run
through the real command line. People sign in in Chromium (password, TOTP, consent) and sign out
on either side; scripts call the API with access tokens and `pkid-…:secret` keys, which stop
working the moment they are revoked. Skipped, saying why, without apache2 and the module (.ci/run
installs both) or without Chromium for the browser tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyotp
import pytest
import requests
from flask import current_app
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from authserver.audit.models import AuditEvent
from authserver.cli import cli
from authserver.extensions import db
from tests.helpers.apache import SITE, RunningApache, installed, run_apache
from tests.helpers.browser import Browsing, follow
from tests.helpers.factories import DEFAULT_PASSWORD, key_headers, make_client, make_key, make_user
from tests.helpers.oidc import live_code, pkce_pair
from tests.helpers.servers import ROOT, app_at_own_issuer, free_port

pytestmark = pytest.mark.live

GUIDE = ROOT / "docs" / "integrations" / "apache.md"
GUIDE_SITE = "https://photos.example"  # the photo site's address in the guide's commands
PHOTOS = {"beach.jpg": b"\xff\xd8\xff\xe0 a beach \xff\xd9", "harbour.jpg": b"\xff\xd8\xff\xe0 a harbour \xff\xd9"}
CACHE_LINE = "OIDCOAuthTokenIntrospectionInterval -1"
TIMEOUT = 10


def guide_commands(prefix: str) -> list[list[str]]:
    """The guide's shell commands that start with `prefix`, split as the shell would (continued
    lines joined; comments and the lines of output shown after `#` dropped)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(prefix):
                commands.append(shlex.split(line, comments=True))
    return commands


def run_command(words: list[str]) -> dict:
    """An `authserver …` command run through the real command line, in this app; its --json answer."""
    assert words[0] == "authserver"
    result = current_app.test_cli_runner().invoke(cli, [*words[1:], "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@dataclass
class Site:
    services: object
    url: str  # authserver's
    apache: RunningApache
    api_client: tuple[str, str]
    gallery_client: tuple[str, str]

    @property
    def base(self) -> str:
        return self.apache.url


@contextlib.contextmanager
def running_site(services, url: str, *, without: tuple[str, ...] = ()) -> Iterator[Site]:
    """Register Apache as the guide says (its site address being the real one), then start it."""
    installed()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_command, gallery_command = guide_commands("authserver client create")
    api = run_command(api_command)
    gallery_command = [w.replace(GUIDE_SITE, base).replace("$API_CLIENT_ID", api["client_id"])
                       for w in gallery_command]
    assert not any("$" in w for w in gallery_command), gallery_command
    gallery = run_command(gallery_command)
    assert gallery["redirect_uris"] == [base + "/oidc/callback"]
    values = {
        "PHOTOS_SITE": base,
        "AUTHSERVER": url,
        "API_CLIENT_ID": api["client_id"],
        "API_CLIENT_SECRET": api["client_secret"],
        "GALLERY_CLIENT_ID": gallery["client_id"],
        "GALLERY_CLIENT_SECRET": gallery["client_secret"],
        "OIDC_PASSPHRASE": secrets.token_urlsafe(32),
    }
    with run_apache(port, values, photos=PHOTOS, without=without) as apache:
        yield Site(services, url, apache, (api["client_id"], api["client_secret"]),
                   (gallery["client_id"], gallery["client_secret"]))


@pytest.fixture
def live(backend, database_urls, tmp_path):
    with app_at_own_issuer(database_urls[backend], tmp_path) as served:
        yield served


@pytest.fixture
def site(live):
    services, url = live
    with running_site(services, url) as running:
        yield running


@pytest.fixture
def people(browser, request):
    """`people()` opens a fresh browser profile (its own cookies); each is closed after the test."""
    opened: list[Browsing] = []

    def open_profile() -> Browsing:
        profile = Browsing(browser, "http://127.0.0.1", request.node.name)
        opened.append(profile)
        return profile

    yield open_profile
    for profile in opened:
        profile.close()


def test_the_guides_apache_excerpts_are_lines_of_the_site_file():
    """The guide shows excerpts of the site file the other tests run: each is a run of its lines."""
    site = SITE.read_text()
    excerpts = re.findall(r"```apache\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(excerpts) >= 3
    for excerpt in excerpts:
        assert excerpt in site, excerpt


# -- people, in Chromium -------------------------------------------------------------------------


def with_totp(services, user) -> pyotp.TOTP:
    """TOTP enrolled for `user`, confirmed with the previous time step's code (±1 step is accepted),
    so that the sign-in's code, of this step or a later one, is still unused."""
    enrolment = services.totp.begin_enrolment(user, actor="test")
    authenticator = pyotp.TOTP(enrolment.secret)
    earlier = services.clock.now().timestamp() - 30
    services.totp.confirm_enrolment(user, authenticator.at(earlier), actor="test", address="192.0.2.1")
    return authenticator


def sign_in_at_the_gallery(person: Browsing, site: Site, username: str, authenticator=None, *, shots=False) -> None:
    """Open the gallery, get sent to authserver, sign in (and TOTP), consent; Apache has the rest."""
    page = person.page
    page.goto(site.base + "/photos/")
    page.wait_for_url(site.url + "/login?**")
    if shots:
        person.shot("login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    follow(page.get_by_role("button", name="Sign in"))
    if authenticator is not None:
        page.wait_for_url(site.url + "/login/totp**")
        page.get_by_label("Code", exact=True).fill(authenticator.at(site.services.clock.now().timestamp()))
        if shots:
            person.shot("totp")
        follow(page.get_by_role("button", name="Verify"))
    assert page.locator("#consent-client").inner_text() == "Photos"
    if shots:
        person.shot("consent")
    follow(page.locator("#consent-allow"))


def base64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def apache_cookie(person: Browsing) -> dict[str, str]:
    return {c["name"]: c["value"] for c in person.context.cookies() if c["name"] == "mod_auth_openidc_session"}


@pytest.mark.browser
def test_a_member_signs_in_with_password_totp_and_consent_and_the_gallery_sees_who(site, people):
    alice = make_user(site.services, "alice", email="alice@photos.example", name="Alice Liddell",
                      groups=["photos", "family"])
    authenticator = with_totp(site.services, alice)
    person = people()
    sign_in_at_the_gallery(person, site, "alice", authenticator, shots=True)
    page = person.page
    assert page.url == site.base + "/photos/"
    person.shot("gallery")
    shown = {name: page.locator(f"#{name}").inner_text() for name in
             ("user", "preferred_username", "email", "groups", "amr", "auth-type")}
    assert shown == {"user": "alice", "preferred_username": "alice", "email": "alice@photos.example",
                     "groups": "photos,family", "amr": "pwd,otp,mfa", "auth-type": "openid-connect"}
    photo = page.goto(site.base + "/photos/beach.jpg")
    assert photo.status == 200 and photo.body() == PHOTOS["beach.jpg"]
    assert photo.headers["content-type"] == "image/jpeg"
    # Without the browser's cookie, nothing: a script is sent to sign in like anyone else.
    anonymous = requests.get(site.base + "/photos/beach.jpg", allow_redirects=False, timeout=TIMEOUT)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith(site.url + "/oauth/authorize?")
    # Apache's session gone (its inactivity timeout, say), authserver's still on: back without a form.
    person.context.clear_cookies(name="mod_auth_openidc_session")
    page.goto(site.base + "/photos/")
    assert page.url == site.base + "/photos/" and page.locator("#user").inner_text() == "alice"


@pytest.mark.browser
def test_someone_outside_the_group_signs_in_but_is_refused(site, people):
    make_user(site.services, "bob", groups=["family"])
    person = people()
    sign_in_at_the_gallery(person, site, "bob")
    page = person.page
    assert page.url == site.base + "/photos/"
    assert "Forbidden" in page.content()
    assert page.goto(site.base + "/photos/beach.jpg").status == 403
    assert page.goto(site.base + "/photos/").status == 403


@pytest.mark.browser
def test_signing_out_through_apache_ends_the_session_at_authserver_too(site, people):
    make_user(site.services, "alice", groups=["photos"])
    person = people()
    sign_in_at_the_gallery(person, site, "alice")
    page = person.page
    follow(page.locator("#sign-out"))
    # mod_auth_openidc → our end_session_endpoint (with its id_token_hint) → the registered landing page.
    assert page.url == site.base + "/"
    assert page.locator("#signed-out").count() == 1
    page.goto(site.url + "/account")
    assert urlsplit(page.url).path == "/login"  # no session here any more
    page.goto(site.base + "/photos/")
    assert page.url.startswith(site.url + "/login?")  # nor at Apache: sent to sign in again


@pytest.mark.browser
def test_signing_out_at_authserver_ends_the_apache_session_by_back_channel(site, people):
    make_user(site.services, "alice", groups=["photos"])
    person = people()
    sign_in_at_the_gallery(person, site, "alice")
    cookie = apache_cookie(person)
    assert cookie

    def gallery_with_old_cookie() -> int:
        return requests.get(site.base + "/photos/", cookies=cookie, allow_redirects=False, timeout=TIMEOUT).status_code

    assert gallery_with_old_cookie() == 200
    # Logout tokens naming this very session, unsigned or signed by someone else, end nothing.
    sid = person.page.locator("#sid").inner_text()
    claims = {"iss": site.url, "aud": site.gallery_client[0], "iat": int(time.time()), "jti": secrets.token_hex(8),
              "sid": sid, "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
    unsigned = ".".join(base64url(json.dumps(part)) for part in ({"alg": "none"}, claims)) + "."
    # Named as authserver's own RSA key, signed with another.
    kid = next(key["kid"] for key in site.services.signing.jwks()["keys"] if key["kty"] == "RSA")
    forged = jwt.encode({"alg": "RS256", "kid": kid, "typ": "logout+jwt"}, claims, RSAKey.generate_key(2048))
    for token in (unsigned, forged):
        refused = requests.post(site.base + "/oidc/callback?logout=backchannel", data={"logout_token": token},
                                timeout=TIMEOUT)
        assert refused.status_code == 400
    assert gallery_with_old_cookie() == 200

    page = person.page
    page.goto(site.url + "/account")
    follow(page.locator("header form[action='/logout'] button"))
    # The logout token is posted in the background: Apache refuses the old cookie within moments.
    deadline = time.monotonic() + 5
    while gallery_with_old_cookie() == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gallery_with_old_cookie() == 302, site.apache.error_log()[-3000:]
    page.goto(site.base + "/photos/")
    assert page.url.startswith(site.url + "/login?")


# -- the API: tokens and keys -----------------------------------------------------------------------


def api(site: Site, path: str, bearer: str | None = None, **headers: str) -> requests.Response:
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return requests.get(site.base + path, headers=headers, allow_redirects=False, timeout=TIMEOUT)


def seen_by_the_api(response: requests.Response) -> dict[str, str]:
    """What the API behind Apache was told about the caller (header names as Apache sent them)."""
    assert response.status_code == 200, response.text
    return response.json()["headers"]


@dataclass
class LiveClient:
    """What tests.helpers.oidc.live_code needs of a client."""

    client_id: str


def gallery_token(site: Site, username: str) -> str:
    """An access token from the token endpoint for the gallery's client, as mod_auth_openidc gets it."""
    http = requests.Session()
    assert http.post(site.url + "/api/session/login", json={"username": username, "password": DEFAULT_PASSWORD},
                     timeout=TIMEOUT).status_code == 200
    verifier, challenge = pkce_pair()
    client_id, secret = site.gallery_client
    redirect_uri = site.base + "/oidc/callback"
    code, _ = live_code(http, site, LiveClient(client_id), redirect_uri=redirect_uri, challenge=challenge,
                        scope="openid profile")
    answer = requests.post(site.url + "/oauth/token", auth=(client_id, secret), timeout=TIMEOUT, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def test_an_access_token_from_the_token_endpoint_gets_into_the_api_until_revoked(site):
    make_user(site.services, "alice", groups=["photos"])
    token = gallery_token(site, "alice")
    seen = seen_by_the_api(api(site, "/api/albums", token))
    assert seen["X-Remote-User"] == "alice"
    assert seen["OIDC_CLAIM_username"] == "alice" and seen["OIDC_CLAIM_token_type"] == "Bearer"
    assert seen["OIDC_CLAIM_scope"] == "openid profile"
    assert seen["OIDC_CLAIM_client_id"] == site.gallery_client[0]
    # Uploads need photos:write, which this token does not hold.
    assert api(site, "/api/upload", token).status_code == 403
    # Revoked (RFC 7009, by the client it was issued to): refused on the very next request.
    client_id, secret = site.gallery_client
    assert requests.post(site.url + "/oauth/revoke", data={"token": token}, auth=(client_id, secret),
                         timeout=TIMEOUT).status_code == 200
    assert api(site, "/api/albums", token).status_code == 401


def test_tokens_not_meant_for_the_api_and_made_up_bearers_are_refused(site):
    make_user(site.services, "alice", groups=["photos"])
    # A token another app got for itself: authserver tells the API it is not active (not its audience).
    other, other_secret = make_client(site.services, "Other App", redirect_uris=(site.base + "/other",),
                                      scope="openid profile")
    http = requests.Session()
    assert http.post(site.url + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD},
                     timeout=TIMEOUT).status_code == 200
    verifier, challenge = pkce_pair()
    code, _ = live_code(http, site, other, redirect_uri=site.base + "/other", challenge=challenge,
                        scope="openid profile")
    tokens = requests.post(site.url + "/oauth/token", auth=(other.client_id, other_secret), timeout=TIMEOUT, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": site.base + "/other",
        "code_verifier": verifier}).json()
    # The API client's own token: active, but for no user (OIDCOAuthRemoteUserClaim username).
    own = requests.post(site.url + "/oauth/token", data={"grant_type": "client_credentials"}, auth=site.api_client,
                        timeout=TIMEOUT)
    assert own.status_code == 200, own.text
    for bearer in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"], own.json()["access_token"],
                   secrets.token_urlsafe(32), "pkid-20260101-AAAAAAAAAAAAAAAAAAAAA:" + "A" * 43):
        refused = api(site, "/api/albums", bearer)
        assert refused.status_code == 401, bearer
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert api(site, "/api/albums").status_code == 401


def test_a_key_gets_into_the_api_as_its_owner_with_its_scopes_until_revoked(site):
    make_user(site.services, "alice", groups=["photos"])
    (mint,) = guide_commands("authserver key mint")
    key = run_command(mint)
    bearer = f"{key['key_id']}:{key['secret']}"
    seen = seen_by_the_api(api(site, "/api/albums", bearer))
    assert seen["X-Remote-User"] == "alice" and seen["OIDC_CLAIM_username"] == "alice"
    assert seen["OIDC_CLAIM_token_type"] == "api_key" and seen["OIDC_CLAIM_key_id"] == key["key_id"]
    assert seen["OIDC_CLAIM_scope"] == "photos:read photos:write"
    assert seen_by_the_api(api(site, "/api/upload", bearer))["X-Remote-User"] == "alice"
    # The same owner's read-only key: in, but not to uploads.
    owner = site.services.accounts.find("alice")
    read_id, read_secret = make_key(site.services, owner, name="viewer", scopes=["photos:read"])
    assert seen_by_the_api(api(site, "/api/albums", f"{read_id}:{read_secret}"))["OIDC_CLAIM_scope"] == "photos:read"
    assert api(site, "/api/upload", f"{read_id}:{read_secret}").status_code == 403
    # A wrong secret (its last character changed), and the key in forms that are not a bearer token.
    wrong_last = "X" if key["secret"][-1] != "X" else "Y"
    assert api(site, "/api/albums", f"{key['key_id']}:{key['secret'][:-1]}{wrong_last}").status_code == 401
    for form in ("raw", "basic", "x-api-key"):
        assert api(site, "/api/albums", **key_headers(form, key["key_id"], key["secret"])).status_code == 401, form
    # Revoked: refused on the very next request.
    site.services.keys.revoke(site.services.keys.find(key["key_id"]), actor="test")
    assert api(site, "/api/albums", bearer).status_code == 401
    assert api(site, "/api/upload", bearer).status_code == 401


def test_a_key_limited_to_addresses_is_not_active_through_apache(site):
    owner = make_user(site.services, "alice", groups=["photos"])
    key_id, secret = make_key(site.services, owner, cidrs=["127.0.0.0/8"])
    assert api(site, "/api/albums", f"{key_id}:{secret}").status_code == 401


def test_callers_cannot_bring_their_own_identity_headers(site):
    owner = make_user(site.services, "alice", groups=["photos"])
    key_id, secret = make_key(site.services, owner, scopes=["photos:read"])
    forged = {"X-Remote-User": "admin", "OIDC_CLAIM_username": "admin", "OIDC-CLAIM-scope": "admin photos:write",
              "OIDC_access_token": "forged"}
    assert api(site, "/api/albums", **forged).status_code == 401
    seen = seen_by_the_api(api(site, "/api/albums", f"{key_id}:{secret}", **forged))
    assert seen["X-Remote-User"] == "alice" and seen["OIDC_CLAIM_username"] == "alice"
    assert seen["OIDC_CLAIM_scope"] == "photos:read"
    assert seen["OIDC_access_token"] == f"{key_id}:{secret}"
    assert "OIDC-CLAIM-scope" not in seen
    assert api(site, "/api/upload", f"{key_id}:{secret}", **forged).status_code == 403


def test_the_api_is_for_the_gallerys_group_only_like_the_gallery(site):
    """Anyone may mint a key with photos scopes for themselves: the group decides, as at /photos/."""
    bob = make_user(site.services, "bob")
    key_id, secret = make_key(site.services, bob, scopes=["photos:read", "photos:write"])
    for path in ("/api/albums", "/api/upload"):
        assert api(site, path, f"{key_id}:{secret}").status_code == 403, path
    alice = make_user(site.services, "alice", groups=["photos"])
    key_id, secret = make_key(site.services, alice, scopes=["photos:read", "photos:write"])
    assert seen_by_the_api(api(site, "/api/upload", f"{key_id}:{secret}"))["X-Remote-User"] == "alice"


def test_options_requests_do_not_reach_the_api_without_a_token(site):
    forged = {"X-Remote-User": "admin", "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    for path in ("/api/albums", "/api/upload"):
        answer = requests.options(site.base + path, headers=forged, timeout=TIMEOUT)
        assert answer.status_code == 403, (path, answer.status_code, answer.text[:200])
        assert "BaseHTTP" not in answer.headers.get("Server", "")  # Apache answered, not the app


def test_signing_out_through_apache_lands_only_on_this_site_and_trace_is_off(site):
    other_port = free_port()
    for elsewhere in (f"http://127.0.0.1:{other_port}/phish", "https://127.0.0.1/x", "ftp://127.0.0.1/x",
                      "https://evil.example/"):
        answer = requests.get(site.base + "/oidc/callback", params={"logout": elsewhere}, allow_redirects=False,
                              timeout=TIMEOUT)
        assert not answer.headers.get("Location", "").startswith(elsewhere), elsewhere
    assert requests.request("TRACE", site.base + "/photos/", timeout=TIMEOUT).status_code == 405


def test_guessing_keys_through_apache_is_throttled_and_the_real_key_still_gets_in(site):
    owner = make_user(site.services, "alice", groups=["photos"])
    key_id, secret = make_key(site.services, owner, scopes=["photos:read"])
    failures = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "key.use",
                                                                  AuditEvent.outcome == "failure")
    before = db.session.scalar(failures)
    for i in range(35):
        assert api(site, "/api/albums", f"{key_id}:{secret[:-7]}{i:07d}").status_code == 401
    db.session.expire_all()
    # authserver counted 30 guesses against Apache's address, then answered 429 without checking more.
    assert db.session.scalar(failures) - before == 30
    assert seen_by_the_api(api(site, "/api/albums", f"{key_id}:{secret}"))["X-Remote-User"] == "alice"


def test_with_the_modules_default_cache_a_revoked_token_still_gets_in(live):
    """Why the site file sets OIDCOAuthTokenIntrospectionInterval -1: without it, mod_auth_openidc
    keeps an introspection answer until the token's exp and never asks again in between."""
    services, url = live
    with running_site(services, url, without=(CACHE_LINE,)) as site:
        owner = make_user(services, "alice", groups=["photos"])
        token = gallery_token(site, "alice")
        assert api(site, "/api/albums", token).status_code == 200
        client_id, secret = site.gallery_client
        assert requests.post(url + "/oauth/revoke", data={"token": token}, auth=(client_id, secret),
                             timeout=TIMEOUT).status_code == 200
        assert api(site, "/api/albums", token).status_code == 200  # revoked here, still in at Apache
        # A key with an expiry is cached the same way; one without an expiry is never cached.
        lasting_id, lasting_secret = make_key(services, owner, name="lasting")
        expiring_id, expiring_secret = make_key(services, owner, name="expiring", expires_in_days=30)
        for key_id, key_secret in ((lasting_id, lasting_secret), (expiring_id, expiring_secret)):
            assert api(site, "/api/albums", f"{key_id}:{key_secret}").status_code == 200
            services.keys.revoke(services.keys.find(key_id), actor="test")
        assert api(site, "/api/albums", f"{lasting_id}:{lasting_secret}").status_code == 401
        assert api(site, "/api/albums", f"{expiring_id}:{expiring_secret}").status_code == 200
