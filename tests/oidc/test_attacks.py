"""Security I: the protocol attacks of issue 12, each performed over real HTTP against a live server.

Every test here sends what an attacker would send and checks that the server refuses it;
on 50170db each of them succeeded (see docs/security.md for the list and the settings).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from authserver.audit.models import AuditEvent
from authserver.extensions import db
from authserver.oidc.clients import ClientError
from authserver.oidc.models import OAuthClient, OAuthToken
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, make_client, make_key, make_user
from tests.helpers.html import form_action
from tests.helpers.oidc import (
    DEFAULT_VERIFIER,
    REDIRECT,
    authorize_params,
    decode_id_token,
    live_browser,
    pkce_pair,
    query_of,
)

NATIVE = "http://127.0.0.1/callback"


@pytest.fixture
def alice(live):
    return make_user(live.services, "alice", admin=True, groups=["family"])


def authorize(http, live, client, **kwargs) -> requests.Response:
    return http.get(live.url + "/oauth/authorize", params=authorize_params(client, **kwargs), allow_redirects=False,
                    timeout=10)


def consented_code(http, live, client, **kwargs) -> tuple[str, dict]:
    """A code for the session's user, consenting on the real page if asked."""
    response = authorize(http, live, client, **kwargs)
    if response.status_code == 200:
        response = http.post(live.url + form_action(response.text), allow_redirects=False, timeout=10,
                             data={"csrf_token": csrf_token(response.text), "allow": "x"})
    assert response.status_code in (302, 303), response.text
    query = query_of(response.headers["Location"])
    assert "code" in query, query
    return query["code"], query


def redeem(live, client, secret, code, *, redirect_uri=REDIRECT, verifier=DEFAULT_VERIFIER) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    if secret is None:
        return requests.post(live.url + "/oauth/token", data={**data, "client_id": client.client_id}, timeout=10)
    return requests.post(live.url + "/oauth/token", data=data, auth=(client.client_id, secret), timeout=10)


def tokens_for(http, live, client, secret, **kwargs) -> dict:
    code, _ = consented_code(http, live, client, **kwargs)
    response = redeem(live, client, secret, code, redirect_uri=kwargs.get("redirect_uri", REDIRECT))
    assert response.status_code == 200, response.text
    return response.json()


def refresh(live, client, secret, refresh_token) -> requests.Response:
    return requests.post(live.url + "/oauth/token", auth=(client.client_id, secret), timeout=10,
                         data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def introspect(live, client, secret, token) -> requests.Response:
    return requests.post(live.url + "/oauth/introspect", auth=(client.client_id, secret), data={"token": token},
                         timeout=10)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def refused_with_error_page(response: requests.Response) -> None:
    """The error page of this server: no redirect anywhere, let alone with a code."""
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert "code=" not in response.text


# -- §1 redirect URIs ---------------------------------------------------------

LOOPBACK_ATTACKS = [
    "http://evil.example\\@127.0.0.1:8765/callback",  # WHATWG: host evil.example
    "http://evil.example%5C@127.0.0.1:8765/callback",
    "http://evil.com@127.0.0.1:8765/callback",  # userinfo
    "http://127.0.0.1:8765/callback#frag",
    "HTTP://127.0.0.1:8765/callback",
    "http://127.0.0.1:99999/callback",
    "http://127.0.0.1:0/callback",
    "http://127.0.0.1:08765/callback",
    "http://127.0.0.1:+80/callback",
    "http://127.0.0.1:/callback",
    "http://localhost:8765/callback",
    "http://[::1]:8765/callback",
    "http://127.0.0.1.evil.example:8765/callback",
    "http://127.0.0.1:8765/callback/",
    "http://127.0.0.1:8765/callback?x=1",
    "http://127.0.0.1:8765/callback/../callback",
    "http://127.0.0.1:8765/%63allback",
    "http://127.0.0.1:8765:80/callback",
    "https://127.0.0.1:8765/callback",
]


@pytest.mark.parametrize("attack", LOOPBACK_ATTACKS)
def test_loopback_redirect_uri_variants_get_the_error_page(live, alice, attack):
    native, _ = make_client(live.services, "Native", redirect_uris=[NATIVE], public=True, trusted=True)
    http = live_browser(live, "alice")
    # The genuine app, on the port it chose, gets its code.
    code, _ = consented_code(http, live, native, redirect_uri="http://127.0.0.1:8765/callback")
    assert code
    refused_with_error_page(authorize(http, live, native, redirect_uri=attack))


def test_the_attackers_code_cannot_be_redeemed_with_its_own_redirect_uri(live, alice):
    """On 50170db: the attacker redeemed the code sent to evil.example with the same URI and its own verifier."""
    native, _ = make_client(live.services, "Native", redirect_uris=[NATIVE], public=True, trusted=True)
    http = live_browser(live, "alice")
    verifier, challenge = pkce_pair()
    evil = "http://evil.example\\@127.0.0.1:8765/callback"
    refused_with_error_page(authorize(http, live, native, redirect_uri=evil, challenge=challenge))
    # A code issued to one loopback port is redeemed only with exactly that URI.
    code, _ = consented_code(http, live, native, redirect_uri="http://127.0.0.1:8765/callback", challenge=challenge)
    for other in (evil, "http://127.0.0.1:8766/callback", NATIVE):
        wrong = redeem(live, native, None, code, redirect_uri=other, verifier=verifier)
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert redeem(live, native, None, code, redirect_uri="http://127.0.0.1:8765/callback",
                  verifier=verifier).status_code == 200


HTTPS_ATTACKS = [
    REDIRECT + "/", REDIRECT + "?x=1", "https://GALLERY.example/callback", REDIRECT + "#f",
    "https://gallery.example/callback/../callback", "https://gallery.example/%63allback",
    "https://gallery.example.evil/callback", "https://gallery.example/callback@evil.example",
    "https://gallery.example:443/callback", "https://gallery.example\\@evil.example/callback",
    "http://gallery.example/callback", " https://gallery.example/callback",
]


@pytest.mark.parametrize("attack", HTTPS_ATTACKS)
def test_web_redirect_uris_match_exactly(live, alice, attack):
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    refused_with_error_page(authorize(http, live, gallery, redirect_uri=attack))


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_broker_refuses_the_same_redirect_uris(live, alice, public):
    client, _ = make_client(live.services, "Broker app", redirect_uris=[NATIVE], public=public, broker=True)
    for attack in ("http://evil.example\\@127.0.0.1:8765/callback", "http://evil.com@127.0.0.1:1/callback",
                   "http://127.0.0.1:99999/callback", "http://localhost:1/callback"):
        response = requests.post(live.url + "/api/oauth/authorize", timeout=10,
                                 json={"client_id": client.client_id, "redirect_uri": attack})
        assert response.status_code == 400 and response.json()["error"] == "invalid_redirect_uri", attack
    ok = requests.post(live.url + "/api/oauth/authorize", timeout=10,
                       json={"client_id": client.client_id, "redirect_uri": "http://127.0.0.1:4711/callback"})
    assert ok.status_code == 200


def test_post_logout_redirect_uris_match_exactly(live, alice):
    gallery, secret = make_client(live.services, trusted=True, post_logout_redirect_uris=["http://127.0.0.1/bye"])
    for attack in ("http://evil.example\\@127.0.0.1:8765/bye", "http://evil@127.0.0.1:1/bye",
                   "http://127.0.0.1:1/bye#x", "http://127.0.0.1:1/bye/"):
        http = live_browser(live, "alice")
        id_token = tokens_for(http, live, gallery, secret)["id_token"]
        response = http.get(live.url + "/oauth/logout", allow_redirects=False, timeout=10,
                            params={"id_token_hint": id_token, "post_logout_redirect_uri": attack})
        assert response.status_code == 200 and "Location" not in response.headers, attack
    http = live_browser(live, "alice")
    id_token = tokens_for(http, live, gallery, secret)["id_token"]
    response = http.get(live.url + "/oauth/logout", allow_redirects=False, timeout=10,
                        params={"id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9000/bye"})
    assert response.status_code == 302 and response.headers["Location"] == "http://127.0.0.1:9000/bye"


@pytest.mark.parametrize("uri", [
    "https://*.example.com/cb", "https://gallery.example/*", "https://gallery.example\\cb",
    "https://user@gallery.example/cb", "https://user:pw@gallery.example/cb", "https://gallery.example/cb#x",
    "http://gallery.example/cb", "http://localhost/cb", "http://192.168.1.10:2283/auth/login",
    "javascript:alert(1)//", "data:text/html,x", "JAVASCRIPT:alert(1)", "https://gallery.example:99999/cb",
    "https://GALLERY.example/cb", "cb", "https://gallery.example/c b",
])
def test_registration_refuses_unsafe_redirect_uris(services, uri):
    with pytest.raises(ClientError):
        make_client(services, redirect_uris=[uri])
    with pytest.raises(ClientError):
        make_client(services, post_logout_redirect_uris=[uri])


@pytest.mark.parametrize("uri", [
    "app.immich:///oauth-callback", "com.example.photos:/callback", "http://127.0.0.1/callback",
    "http://127.0.0.1:8080/cb", "http://[::1]/callback", "https://gallery.example:8443/auth/callback?app=1",
])
def test_registration_keeps_native_and_https_redirect_uris(services, uri):
    client, _ = make_client(services, redirect_uris=[uri])
    assert client.row.redirect_uris == [uri]


def test_admin_console_registration_refuses_a_wildcard(live):
    make_user(live.services, "root", admin=True)
    http = requests.Session()
    page = http.get(live.url + "/login", timeout=10)
    http.post(live.url + "/login", timeout=10, data={"username": "root", "password": DEFAULT_PASSWORD,
                                                     "csrf_token": csrf_token(page.text)})
    page = http.get(live.url + "/admin/clients", timeout=10)
    response = http.post(live.url + "/admin/clients", timeout=10, data={
        "csrf_token": csrf_token(page.text), "name": "Wild", "redirect_uris": "https://*.example.com/cb",
        "token_endpoint_auth_method": "client_secret_basic", "grant_types": "authorization_code",
        "scope": "openid", "id_token_signed_response_alg": "RS256", "access_token_format": "opaque"})
    assert response.status_code == 400 and "wildcards are not supported" in response.text, \
        [line for line in response.text.splitlines() if "error" in line]
    assert db.session.scalar(select(func.count()).select_from(OAuthClient)) == 0


# -- §2 login freshness -------------------------------------------------------


@pytest.mark.parametrize("extra", [
    {"prompt": "login", "auth_after": "1"},
    {"max_age": "0", "auth_after": "1"},
    {"prompt": "login", "auth_after": "99999999999"},
    {"prompt": "login", "login_ticket": "forged"},
    {"max_age": "0", "login_ticket": "eyJ0IjoxfQ.forged"},
])
def test_a_request_parameter_cannot_waive_a_fresh_login(live, alice, extra):
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    response = authorize(http, live, gallery, **extra)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), \
        response.headers.get("Location")


def _login_form(http, live, login_location: str, password: str = DEFAULT_PASSWORD,
                username: str = "alice") -> requests.Response:
    page = http.get(live.url + login_location, timeout=10)
    next_value = page.text.split('name="next" type="hidden" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    return http.post(live.url + "/login", allow_redirects=False, timeout=10, data={
        "username": username, "password": password, "csrf_token": csrf_token(page.text), "next": next_value})


def test_prompt_login_returns_a_code_only_after_a_new_login(live, alice):
    gallery, secret = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    to_login = authorize(http, live, gallery, prompt="login")
    assert to_login.status_code == 302
    ticket_url = query_of(to_login.headers["Location"])["next"]
    # Replaying the server's own ticket without logging in again does not help.
    replay = http.get(live.url + ticket_url, allow_redirects=False, timeout=10)
    assert replay.headers["Location"].startswith("/login?next=")
    # Nor does the ticket of this request on another request (another state).
    ticket = query_of(ticket_url)["login_ticket"]
    other = authorize(http, live, gallery, state="another", prompt="login", login_ticket=ticket)
    assert other.headers["Location"].startswith("/login?next=")
    signed = _login_form(http, live, to_login.headers["Location"])
    assert signed.status_code == 303
    done = http.get(live.url + signed.headers["Location"], allow_redirects=False, timeout=10)
    code = query_of(done.headers["Location"])["code"]
    tokens = redeem(live, gallery, secret, code).json()
    claims = decode_id_token(live.services, tokens["id_token"])
    assert claims["auth_time"] >= int(live.services.clock.now().timestamp()) - 60


def test_a_ticket_from_an_old_login_does_not_make_a_later_request_fresh(live, alice):
    """A login page URL kept in the browser's history carries a ticket; it expires and is bound to its request."""
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    to_login = authorize(http, live, gallery, prompt="login", state="old")
    old_next = query_of(to_login.headers["Location"])["next"]
    signed = _login_form(http, live, to_login.headers["Location"])
    assert http.get(live.url + signed.headers["Location"], allow_redirects=False,
                    timeout=10).headers["Location"].startswith(REDIRECT)
    ticket = query_of(old_next)["login_ticket"]
    later = authorize(http, live, gallery, prompt="login", state="new", login_ticket=ticket)
    assert later.headers["Location"].startswith("/login?next=")


def test_a_ticket_counts_once(live, alice):
    """Found by the black-box review: the ticket URL kept giving codes for 30 minutes after one login."""
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        # Without a nonce (with one, the replayed request is refused as a nonce replay anyway).
        to_login = authorize(http, live, gallery, nonce=None, **extra)
        signed = _login_form(http, live, to_login.headers["Location"])
        first = http.get(live.url + signed.headers["Location"], allow_redirects=False, timeout=10)
        assert "code=" in first.headers["Location"]
        again = http.get(live.url + signed.headers["Location"], allow_redirects=False, timeout=10)
        assert again.headers["Location"].startswith("/login?next="), extra


def test_a_ticket_needs_a_recent_login(live_server, services, clock):
    """A login page left open: the login must be newer than the ticket and still recent when it is used."""
    make_user(services, "alice")
    gallery, _ = make_client(services, trusted=True)
    http = live_browser(live_server, "alice")
    to_login = authorize(http, live_server, gallery, prompt="login")
    clock.advance(seconds=1)
    signed = _login_form(http, live_server, to_login.headers["Location"], username="alice")
    clock.advance(seconds=301)
    late = http.get(live_server.url + signed.headers["Location"], allow_redirects=False, timeout=10)
    assert late.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("query", ["prompt=none&prompt=login", "max_age=100000&max_age=1", "nonce=a&nonce=b",
                                   "acr_values=1&acr_values=2"])
def test_repeated_parameters_are_refused(live, alice, query):
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    params = {k: v for k, v in authorize_params(gallery).items() if k != "nonce"}
    response = http.get(live.url + "/oauth/authorize?" + urlencode(params) + "&" + query, allow_redirects=False,
                        timeout=10)
    assert response.status_code == 400 and "more than once" in response.text


def test_acr_values_asking_for_two_factors_leads_to_the_second_factor(live, alice):
    gallery, _ = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")  # password only: acr 1
    none = authorize(http, live, gallery, acr_values="2", prompt="none")
    assert query_of(none.headers["Location"])["error"] == "unmet_authentication_requirements"
    to_login = authorize(http, live, gallery, acr_values="2")
    assert to_login.headers["Location"].startswith("/login?next=")
    # The password alone does not finish it: this user has no TOTP, so enrolment comes first.
    signed = _login_form(http, live, to_login.headers["Location"])
    assert signed.status_code == 303 and signed.headers["Location"] == "/login/totp/setup"
    # A value this server does not know is ignored (acr is a voluntary claim); "1 2" accepts one factor.
    http = live_browser(live, "alice")
    for accepted in ("urn:unknown", "1 2"):
        assert authorize(http, live, gallery, acr_values=accepted).headers["Location"].startswith(REDIRECT)


def test_acr_values_met_by_a_totp_session(live_server, services, clock):
    alice = make_user(services, "alice")
    gallery, secret = make_client(services, trusted=True)
    device, _ = enrol_totp(services, alice)
    http = requests.Session()
    login = http.post(live_server.url + "/api/session/login", timeout=10,
                      json={"username": "alice", "password": DEFAULT_PASSWORD, "totp_code": device.code()})
    assert login.status_code == 200
    code, _ = consented_code(http, live_server, gallery, acr_values="2")
    claims = decode_id_token(services, redeem(live_server, gallery, secret, code).json()["id_token"])
    assert claims["acr"] == "2" and "otp" in claims["amr"]


# -- §3 audiences and management scopes ---------------------------------------


def test_a_third_party_client_cannot_be_registered_with_the_admin_scope(services):
    with pytest.raises(ClientError, match="first-party"):
        make_client(services, "galleryadmin", scope="openid profile admin")
    official, _ = make_client(services, "Console app", scope="openid profile admin", first_party=True)
    assert official.row.is_first_party and official.row.is_trusted


def test_an_old_registration_with_admin_cannot_get_it_through_consent(live, alice):
    gallery, _ = make_client(live.services, "galleryadmin", scope="openid profile")
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == gallery.client_id))
    row.scope = "openid profile admin"  # as 50170db let it be registered
    db.session.commit()
    http = live_browser(live, "alice")
    response = authorize(http, live, gallery, scope="openid profile admin")
    assert query_of(response.headers["Location"])["error"] == "invalid_scope"


def test_a_relying_partys_token_is_no_key_to_this_servers_api(live, alice):
    make_user(live.services, "carol")
    gallery, secret = make_client(live.services, "galleryadmin", scope="openid profile")
    http = live_browser(live, "alice")
    token = tokens_for(http, live, gallery, secret, scope="openid profile")["access_token"]
    headers = bearer(token)
    # The token is fine for what it was issued for: userinfo.
    assert requests.get(live.url + "/oauth/userinfo", headers=headers, timeout=10).status_code == 200
    attacks = [
        requests.get(live.url + "/api/keys?all=1", headers=headers, timeout=10),
        requests.post(live.url + "/api/keys", headers=headers, json={"user": "alice", "name": "x"}, timeout=10),
        requests.post(live.url + "/api/admin/users/carol/totp/reset", headers=headers, timeout=10),
        requests.get(live.url + "/api/me", headers=headers, timeout=10),
        requests.get(live.url + "/api/authz/forward-auth", headers=headers, timeout=10),
    ]
    assert [r.status_code for r in attacks] == [401] * 5
    assert "first-party" in attacks[0].json()["error_description"]


def test_a_first_party_clients_token_works_on_the_api_with_its_scopes(live, alice):
    official, secret = make_client(live.services, "Console app", scope="openid profile admin", first_party=True)
    http = live_browser(live, "alice")
    tokens = tokens_for(http, live, official, secret, scope="openid profile admin")
    me = requests.get(live.url + "/api/me", headers=bearer(tokens["access_token"]), timeout=10)
    assert me.status_code == 200 and me.json()["client_id"] == official.client_id
    listed = requests.get(live.url + "/api/keys?all=1", headers=bearer(tokens["access_token"]), timeout=10)
    assert listed.status_code == 200
    row = db.session.scalar(select(OAuthToken).where(OAuthToken.client_id == official.client_id))
    assert live.services.oidc.api_audience in row.audience.split()


def test_jwt_access_tokens_carry_the_audience(live, alice):
    gallery, secret = make_client(live.services, "JWT app", access_token_format="jwt")
    official, official_secret = make_client(live.services, "Official", access_token_format="jwt", first_party=True)
    http = live_browser(live, "alice")
    third = decode_id_token(live.services, tokens_for(http, live, gallery, secret)["access_token"])
    first = decode_id_token(live.services, tokens_for(http, live, official, official_secret)["access_token"])
    assert third["aud"] == gallery.client_id
    assert first["aud"] == [official.client_id, live.url + "/api"]


def test_a_narrow_key_cannot_revoke_the_users_apps(live, alice):
    """Found by the black-box review: a photos:read key revoked consents (and with them the apps' tokens)."""
    gallery, secret = make_client(live.services)
    http = live_browser(live, "alice")
    tokens_for(http, live, gallery, secret)
    key_id, key_secret = make_key(live.services, alice, scopes=["photos:read"])
    headers = {"X-API-Key": f"{key_id}:{key_secret}"}
    assert requests.get(live.url + "/api/me/consents", headers=headers, timeout=10).status_code == 403
    refused = requests.delete(live.url + "/api/me/consents/" + gallery.client_id, headers=headers, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert http.get(live.url + "/api/me/consents", timeout=10).json()["consents"]


# -- §4 introspection rights --------------------------------------------------


def test_only_a_registered_resource_server_introspects_and_only_tokens_meant_for_it(live, alice):
    gallery, secret = make_client(live.services, "Gallery")
    http = live_browser(live, "alice")
    tokens = tokens_for(http, live, gallery, secret)
    key_id, key_secret = make_key(live.services, alice)
    snooper, snooper_secret = make_client(live.services, "Snooper", redirect_uris=(), grants=["client_credentials"],
                                          scope="photos:read")
    refused = introspect(live, snooper, snooper_secret, tokens["access_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    other_rs, other_secret = make_client(live.services, "Other API", redirect_uris=(), grants=["client_credentials"],
                                         scope="photos:read", introspect=True)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert introspect(live, other_rs, other_secret, token).json() == {"active": False}
    # API keys are credentials for every resource server.
    assert introspect(live, other_rs, other_secret, f"{key_id}:{key_secret}").json()["active"] is True


def test_guessing_key_secrets_through_introspection_is_throttled_and_audited(live, alice):
    api, api_secret = make_client(live.services, "Photo API", redirect_uris=(), grants=["client_credentials"],
                                  scope="photos:read", introspect=True)
    key_id, key_secret = make_key(live.services, alice)
    before = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "key.use"))
    statuses = []
    for i in range(40):
        guess = key_secret[:-7] + f"{i:07d}"
        statuses.append(introspect(live, api, api_secret, f"{key_id}:{guess}").status_code)
    assert statuses[:30] == [200] * 30 and set(statuses[30:]) == {429}
    db.session.expire_all()
    after = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "key.use"))
    assert after - before == 30
    # One more wrong guess: its last character is never the secret's own (1 secret in 62 ends in X).
    wrong_last = "X" if key_secret[-1] != "X" else "Y"
    throttled = introspect(live, api, api_secret, f"{key_id}:{key_secret[:-1]}{wrong_last}")
    assert throttled.status_code == 429 and throttled.json()["error"] == "slow_down"
    assert throttled.headers["Retry-After"]
    # A valid key is never refused because of other guesses from the same service (Security II).
    assert introspect(live, api, api_secret, f"{key_id}:{key_secret}").json()["active"] is True


# -- §5 refresh token lifetimes -----------------------------------------------


def test_refresh_tokens_are_issued_only_to_clients_registered_for_them(live, alice):
    created = live.services.oidc.clients.create(name="Plain", redirect_uris=[REDIRECT], actor="test")
    assert created.row.grant_types == ["authorization_code"]
    plain = live.services.oidc.clients.get(created.row.client_id)
    http = live_browser(live, "alice")
    assert "refresh_token" not in tokens_for(http, live, plain, created.client_secret)


def test_a_refresh_token_without_offline_access_dies_with_the_session(live, alice):
    gallery, secret = make_client(live.services, trusted=True, scope="openid profile offline_access")
    http = live_browser(live, "alice")
    online = tokens_for(http, live, gallery, secret, scope="openid profile")
    offline = tokens_for(http, live, gallery, secret, scope="openid profile offline_access")
    assert refresh(live, gallery, secret, online["refresh_token"]).status_code == 200
    renewed_online = refresh(live, gallery, secret, online["refresh_token"])  # reuse: family revoked
    assert renewed_online.status_code == 400
    online = tokens_for(http, live, gallery, secret, scope="openid profile")
    assert http.post(live.url + "/api/session/logout", json={}, timeout=10).status_code == 200
    dead = refresh(live, gallery, secret, online["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    assert introspect_self(live, gallery, secret, online["access_token"]) == {"active": False}
    # offline_access: the app keeps working after the browser logs out.
    assert refresh(live, gallery, secret, offline["refresh_token"]).status_code == 200


def introspect_self(live, client, secret, token):
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client.client_id))
    row.can_introspect = True
    db.session.commit()
    return introspect(live, client, secret, token).json()


def test_a_password_change_revokes_refresh_tokens(live, alice):
    gallery, secret = make_client(live.services, trusted=True, scope="openid offline_access")
    http = live_browser(live, "alice")
    offline = tokens_for(http, live, gallery, secret, scope="openid offline_access")
    account = http.get(live.url + "/account", timeout=10)
    assert "apps you signed in to must sign in again" in account.text
    changed = http.post(live.url + "/account/password", allow_redirects=False, timeout=10, data={
        "csrf_token": csrf_token(account.text), "current_password": DEFAULT_PASSWORD,
        "new_password": "a brand new passphrase", "confirm_password": "a brand new passphrase"})
    assert changed.status_code == 303, changed.text
    dead = refresh(live, gallery, secret, offline["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


def test_disabling_a_user_revokes_rather_than_masks(live, alice):
    bob = make_user(live.services, "bob")
    gallery, secret = make_client(live.services, trusted=True, scope="openid offline_access", first_party=True)
    http = live_browser(live, "bob")
    tokens = tokens_for(http, live, gallery, secret, scope="openid offline_access")
    admin = live.services.admin
    admin.set_disabled(alice, bob, True)
    admin.set_disabled(alice, bob, False)
    assert requests.get(live.url + "/api/me", headers=bearer(tokens["access_token"]), timeout=10).status_code == 401
    assert refresh(live, gallery, secret, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert http.get(live.url + "/api/me", timeout=10).status_code == 401


def test_a_refresh_family_ends_at_its_absolute_lifetime(live_server, services, clock):
    """Used every day, a family still ends AUTHSERVER_REFRESH_ABSOLUTE_SECONDS after the login."""
    make_user(services, "alice")
    gallery, secret = make_client(services, trusted=True, scope="openid offline_access")
    http = live_browser(live_server, "alice")
    token = tokens_for(http, live_server, gallery, secret, scope="openid offline_access")["refresh_token"]
    absolute = services.settings.refresh_absolute_seconds
    days = absolute // 86400
    for _ in range(days - 1):
        clock.advance(days=1)
        response = refresh(live_server, gallery, secret, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    clock.advance(days=1, seconds=1)
    ended = refresh(live_server, gallery, secret, token)
    assert ended.status_code == 400 and ended.json()["error"] == "invalid_grant"


def test_an_unused_refresh_token_expires_when_idle(live_server, services, clock):
    make_user(services, "alice")
    gallery, secret = make_client(services, trusted=True, scope="openid offline_access")
    http = live_browser(live_server, "alice")
    token = tokens_for(http, live_server, gallery, secret, scope="openid offline_access")["refresh_token"]
    clock.advance(seconds=services.settings.refresh_idle_seconds + 1)
    assert refresh(live_server, gallery, secret, token).json()["error"] == "invalid_grant"


# -- §6 smaller points --------------------------------------------------------


@pytest.mark.parametrize("field", ["redirect_uri", "response_type", "state", "scope", "nonce", "prompt"])
@pytest.mark.parametrize("bad", ["\\", '"', "\x00", "é", "\u2028"],
                         ids=["backslash", "quote", "nul", "e-acute", "u2028"])
def test_odd_characters_in_the_authorization_request_are_a_4xx(live, alice, field, bad):
    gallery, _ = make_client(live.services, trusted=True)
    params = authorize_params(gallery)
    params[field] = params.get(field, "x") + bad
    http = live_browser(live, "alice")
    response = http.get(live.url + "/oauth/authorize?" + urlencode(params), allow_redirects=False, timeout=10)
    assert 300 <= response.status_code < 500, (response.status_code, response.text[:200])


def test_login_and_consent_redirect_with_303_after_a_post(live, alice):
    gallery, _ = make_client(live.services)
    http = requests.Session()
    to_login = authorize(http, live, gallery)
    signed = _login_form(http, live, to_login.headers["Location"])
    assert signed.status_code == 303
    consent = http.get(live.url + signed.headers["Location"], allow_redirects=False, timeout=10)
    assert consent.status_code == 200
    allowed = http.post(live.url + form_action(consent.text), allow_redirects=False, timeout=10,
                        data={"csrf_token": csrf_token(consent.text), "allow": "x"})
    assert allowed.status_code == 303 and "code=" in allowed.headers["Location"]


def test_a_cookieless_logout_with_an_old_id_token_ends_no_session(live, alice):
    gallery, secret = make_client(live.services, trusted=True)
    victim = live_browser(live, "alice")
    id_token = tokens_for(victim, live, gallery, secret)["id_token"]
    attacker = requests.Session()
    page = attacker.get(live.url + "/oauth/logout", params={"id_token_hint": id_token}, allow_redirects=False,
                        timeout=10)
    assert page.status_code == 200 and "Sign out?" in page.text
    forged = attacker.post(live.url + "/oauth/logout", data={"id_token_hint": id_token}, allow_redirects=False,
                           timeout=10)
    assert forged.status_code == 200
    assert victim.get(live.url + "/api/me", timeout=10).status_code == 200


def test_an_id_token_from_an_earlier_sign_in_does_not_end_the_current_session_unasked(live, alice):
    """A sign-out link carrying an ID token the user was issued in an earlier session (kept by an
    app, a log, another site): the user is asked; their current session is not ended by it."""
    gallery, secret = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    old_token = tokens_for(http, live, gallery, secret)["id_token"]
    assert http.post(live.url + "/api/session/logout", json={}, timeout=10).status_code in (200, 204)
    assert http.post(live.url + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD},
                     timeout=10).status_code == 200
    page = http.get(live.url + "/oauth/logout", params={"id_token_hint": old_token}, timeout=10)
    assert page.status_code == 200 and "Sign out?" in page.text
    assert http.get(live.url + "/api/me", timeout=10).status_code == 200
    # An ID token of this session still signs out at once, as before.
    current = tokens_for(http, live, gallery, secret)["id_token"]
    assert "signed out" in http.get(live.url + "/oauth/logout", params={"id_token_hint": current}, timeout=10).text
    assert http.get(live.url + "/api/me", timeout=10).status_code == 401


def test_an_expired_id_token_hint_only_names_the_client(live_server, services, clock):
    make_user(services, "alice")
    gallery, secret = make_client(services, trusted=True, post_logout_redirect_uris=["https://gallery.example/bye"])
    http = live_browser(live_server, "alice")
    id_token = tokens_for(http, live_server, gallery, secret)["id_token"]
    clock.advance(hours=2)
    page = http.get(live_server.url + "/oauth/logout", allow_redirects=False, timeout=10,
                    params={"id_token_hint": id_token, "post_logout_redirect_uri": "https://gallery.example/bye"})
    assert page.status_code == 200 and "Sign out?" in page.text and "Gallery" in page.text
    assert http.get(live_server.url + "/api/me", timeout=10).status_code == 200


def test_new_rsa_signing_keys_have_3072_bits(live, alice):
    gallery, secret = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    tokens_for(http, live, gallery, secret)
    jwks = requests.get(live.url + "/oauth/jwks", timeout=10).json()
    rsa = [key for key in jwks["keys"] if key["kty"] == "RSA"]
    assert rsa and all(len(base64.urlsafe_b64decode(key["n"] + "==")) * 8 >= 3072 for key in rsa)


def test_discovery_says_what_is_enforced(live):
    meta = requests.get(live.url + "/.well-known/openid-configuration", timeout=10).json()
    assert meta["acr_values_supported"] == ["1", "2"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "admin" not in meta["scopes_supported"]
    assert "implicit" not in json.dumps(meta) and urlsplit(meta["issuer"]).netloc


def test_the_signed_out_page_shows_no_signed_in_navigation(live, alice):
    gallery, secret = make_client(live.services, trusted=True)
    http = live_browser(live, "alice")
    id_token = tokens_for(http, live, gallery, secret)["id_token"]
    page = http.get(live.url + "/oauth/logout", params={"id_token_hint": id_token}, timeout=10)
    assert page.status_code == 200 and "signed out" in page.text
    assert 'href="/account/keys"' not in page.text and http.get(live.url + "/api/me", timeout=10).status_code == 401


@pytest.mark.parametrize("hint", ["not-a-jwt", "eyJhbGciOiJub25lIn0.e30.", "a.b.c"])
def test_a_malformed_id_token_hint_gets_a_page_that_says_so(live, alice, hint):
    http = live_browser(live, "alice")
    page = http.get(live.url + "/oauth/logout", params={"id_token_hint": hint}, timeout=10)
    assert page.status_code == 400 and "not an ID token this server signed" in page.text
    assert http.get(live.url + "/api/me", timeout=10).status_code == 200


# -- client authentication with a malformed Basic header ----------------------------------


@pytest.mark.parametrize("raw", [b"\xff\xfe:secret", b"client:\xff", b"\x00\xff\xfe", b"\xc3", "two"])
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_a_basic_header_that_is_not_utf8_is_an_invalid_client_not_a_500(client, services, path, raw):
    """A Basic credential whose base64 decodes to bytes that are not UTF-8 (or two credentials in
    one header): the same 401 as any failed client authentication, counted and audited, never an
    unhandled exception."""
    gallery, secret = make_client(services, "Gallery", grants=("authorization_code", "client_credentials"),
                                  introspect=True)
    if raw == "two":
        valid = base64.b64encode(f"{gallery.client_id}:{secret}".encode()).decode()
        header = f"Basic eDp5, Basic {valid}"
    else:
        header = "Basic " + base64.b64encode(raw).decode()
    form = {"grant_type": "client_credentials"} if path == "/oauth/token" else {"token": "x"}
    response = client.post(path, data=form, headers={"Authorization": header})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_client"
    failures = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "client.auth_failed"))
    assert failures == 1


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_one_client_authentication_method_per_request(client, services, path):
    """RFC 6749 §2.3.1: a client uses one authentication method per request. Basic credentials
    with form credentials too, or with a form client_id naming another client, are refused
    (400 invalid_request) whichever of them is valid; never answered as one of the two."""
    grants = ("authorization_code", "client_credentials")
    first, first_secret = make_client(services, "First", grants=grants, introspect=True)
    second, second_secret = make_client(services, "Second", grants=grants, introspect=True)
    form = {"grant_type": "client_credentials"} if path == "/oauth/token" else {"token": "x"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"{first.client_id}:{first_secret}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{first.client_id}:wrong".encode()).decode()}
    for headers, extra in (
        (wrong, {"client_id": second.client_id, "client_secret": second_secret}),
        (basic, {"client_id": second.client_id, "client_secret": second_secret}),
        (basic, {"client_id": first.client_id, "client_secret": first_secret}),
        (basic, {"client_id": second.client_id}),
    ):
        response = client.post(path, data={**form, **extra}, headers=headers)
        assert response.status_code == 400, (extra, response.get_data(as_text=True))
        assert response.json["error"] == "invalid_request"
        assert "one" in response.json["error_description"]
    # The same client named in both places, without a second secret, is one method: fine.
    same = client.post(path, data={**form, "client_id": first.client_id}, headers=basic)
    assert same.status_code == 200


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_repeated_parameters_at_the_client_endpoints_are_refused(client, services, path):
    """RFC 6749 §3.1: a parameter is sent at most once. A second `grant_type`, `scope` or `token`
    is refused (400 invalid_request naming it) rather than one of the two silently used."""
    gallery, secret = make_client(services, "Gallery", grants=("authorization_code", "client_credentials"),
                                  introspect=True)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{gallery.client_id}:{secret}".encode()).decode()}
    if path == "/oauth/token":
        body = "grant_type=client_credentials&grant_type=authorization_code"
        repeated = "grant_type"
    else:
        body = "token=a&token=b"
        repeated = "token"
    response = client.post(path, data=body, headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_request" and repeated in response.json["error_description"]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/par",
                                  "/oauth/device_authorization"])
def test_parameters_in_the_query_string_of_a_client_endpoint_are_refused(client, services, path):
    """RFC 6749 §3.2 and RFC 7662/7009/9126/8628: the parameters travel in the form body. A query
    string beside it was read as parameters too (the query won over the body, unseen by the check
    for repeated parameters): now a 400 invalid_request, whatever the body says."""
    gallery, secret = make_client(services, "Gallery", grants=("authorization_code", "client_credentials"),
                                  introspect=True)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{gallery.client_id}:{secret}".encode()).decode()}
    for query in ("grant_type=client_credentials", "scope=admin", "token=x", "a=b"):
        response = client.post(f"{path}?{query}", data={"grant_type": "authorization_code", "token": "y"},
                               headers=auth)
        assert response.status_code == 400, (query, response.get_data(as_text=True))
        assert response.json["error"] == "invalid_request" and "query" in response.json["error_description"]
    # Without a query string the same endpoint answers as before.
    plain = client.post(path, data={"grant_type": "client_credentials", "token": "y"}, headers=auth)
    assert "query" not in (plain.json or {}).get("error_description", ""), plain.get_data(as_text=True)
