"""Real reverse proxies in front of an echoing upstream, with the app on a live server.

nginx (`auth_request`) runs config/examples/nginx-forward-auth.conf with only
its `listen` line changed; Caddy (`forward_auth`) runs
config/examples/Caddyfile.forward-auth unchanged. Each is skipped, saying why,
when not installed (.ci/run installs both).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from authserver.access_rules import load_rules, parse_host_patterns, parse_networks
from authserver.cookies import SESSION_COOKIE
from tests.helpers.factories import DEFAULT_PASSWORD, key_headers, make_key, make_user
from tests.helpers.proxies import EchoUpstream, run_caddy, run_nginx
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.live

HOST = "photos.test"
RULES = [{"host": HOST, "path": "/share", "policy": "bypass"}]


@pytest.fixture
def settings(backend, database_urls, tmp_path):
    return make_settings(
        tmp_path,
        database_urls[backend],
        # The proxies (and the test client) talk from loopback; only then are their headers believed.
        trusted_proxies=parse_networks("127.0.0.1/32,::1/128"),
        issuer="http://auth.photos.test",
        forward_auth_rules=load_rules(json.dumps(RULES), "one_factor", base=tmp_path),
        forward_auth_domains=parse_host_patterns(HOST),
        # docs/integrations/piwigo-style.md: Piwigo's own key header, as well as the default one.
        key_headers=("X-API-Key", "X-PIWIGO-API"),
    )


@pytest.fixture(params=["nginx", "caddy"])
def proxy(request, live_server, tmp_path):
    """The base URL of a real proxy running the shipped example configuration."""
    start = {"nginx": run_nginx, "caddy": run_caddy}[request.param]
    with EchoUpstream() as upstream, start(tmp_path / request.param, live_server.port, upstream.port, HOST) as url:
        yield url


def get(base, path, browser=None, **headers):
    """A request to the gallery's host through the proxy, carrying the browser's session cookie if any."""
    headers = {"Host": HOST, **headers}
    if browser is not None and SESSION_COOKIE in browser.cookies:
        # Explicitly: requests matches cookies against the Host header, and this
        # cookie was set by 127.0.0.1 (the live server), as a shared-domain cookie would be.
        headers["Cookie"] = f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"
    return requests.get(base + path, headers=headers, allow_redirects=False, timeout=10)


def logged_in(live_server, services, username="alice"):
    make_user(services, username, email=f"{username}@photos.test", name="Alice Liddell", groups=["family", "admins"])
    browser = requests.Session()
    response = browser.post(live_server.url + "/api/session/login",
                            json={"username": username, "password": DEFAULT_PASSWORD}, timeout=10)
    assert response.status_code == 200
    return browser


def test_no_credentials_api_location_is_401(proxy):
    response = get(proxy, "/api/albums")
    assert response.status_code == 401


def test_no_credentials_browser_location_redirects_to_login_with_next(proxy):
    response = get(proxy, "/albums/7?sort=date")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert (location.netloc, location.path) == ("auth.photos.test", "/login")
    assert parse_qs(location.query) == {"next": [f"http://{HOST}/albums/7?sort=date"]}


def test_session_cookie_passes_and_the_upstream_sees_who(proxy, live_server, services):
    browser = logged_in(live_server, services)
    for path in ("/api/albums", "/albums/7"):
        response = get(proxy, path, browser)
        assert response.status_code == 200
        seen = response.json()["headers"]
        assert seen["Remote-User"] == "alice"
        assert seen["Remote-Email"] == "alice@photos.test"
        assert seen["Remote-Name"] == "Alice Liddell"
        assert seen["Remote-Groups"] == "family,admins"
        assert seen["Remote-Auth-Method"] == "password"


def test_after_logout_the_session_no_longer_passes(proxy, live_server, services):
    browser = logged_in(live_server, services)
    assert get(proxy, "/api/albums", browser).status_code == 200
    assert browser.post(live_server.url + "/api/session/logout", json={}, timeout=10).status_code == 200
    assert get(proxy, "/api/albums", browser).status_code == 401
    browser.cookies.clear()
    assert get(proxy, "/api/albums", browser).status_code == 401


def test_a_client_cannot_spoof_remote_headers(proxy, live_server, services):
    spoof = {"Remote-User": "admin", "Remote-Groups": "admins", "Remote-Auth-Method": "password+totp"}
    assert get(proxy, "/api/albums", **spoof).status_code == 401
    assert get(proxy, "/albums", **spoof).status_code == 302
    # Under a bypass rule the request passes, but the forged identity is stripped
    # (nginx drops the headers; Caddy passes authserver's empty values).
    shared = get(proxy, "/share/abc", **spoof)
    assert shared.status_code == 200
    assert not any(shared.json()["headers"].values())
    # Logged in as alice, the upstream sees alice, not the forged admin.
    browser = logged_in(live_server, services)
    seen = get(proxy, "/api/albums", browser, **spoof).json()["headers"]
    assert seen["Remote-User"] == "alice"
    assert seen["Remote-Auth-Method"] == "password"




@pytest.mark.parametrize("form", ["raw", "basic", "x-api-key"])
def test_each_api_key_header_form_passes_and_the_upstream_sees_who(proxy, services, form):
    owner = make_user(services, "uploader", email="uploader@photos.test", name="Uploader", groups=["photos"])
    key_id, secret = make_key(services, owner, scopes=["photos:write"])
    response = get(proxy, "/api/albums", **key_headers(form, key_id, secret))
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["Remote-User"] == "uploader"
    assert seen["Remote-Auth-Method"] == "api_key"
    assert seen["Remote-Groups"] == "photos"


def test_a_revoked_key_no_longer_passes(proxy, services):
    key_id, secret = make_key(services, make_user(services, "uploader"))
    headers = key_headers("x-api-key", key_id, secret)
    assert get(proxy, "/api/albums", **headers).status_code == 200
    services.keys.revoke(services.keys.find(key_id), actor="test")
    assert get(proxy, "/api/albums", **headers).status_code == 401


def test_a_script_uploading_with_a_piwigo_style_key_header_passes_as_its_owner(proxy, live_server, services):
    """docs/integrations/piwigo-style.md: AUTHSERVER_KEY_HEADERS=X-API-Key,X-PIWIGO-API; an uploader
    sends `X-PIWIGO-API: pkid-…:secret` to the gallery, the proxy asks authserver, the gallery
    sees Remote-User (what Piwigo's apache_authentication mode reads)."""
    alice = make_user(services, "alice", email="alice@photos.test", groups=["family"])
    key_id, secret = make_key(services, alice, scopes=["photos:write"])
    upload = get(proxy, "/ws.php?method=pwg.images.addSimple", **{"X-PIWIGO-API": f"{key_id}:{secret}"})
    assert upload.status_code == 200
    seen = upload.json()["headers"]
    assert seen["Remote-User"] == "alice" and seen["Remote-Auth-Method"] == "api_key"
    # A wrong key never reaches the gallery: refused, or (a page path, in these configs) sent to log in.
    assert get(proxy, "/ws.php", **{"X-PIWIGO-API": f"{key_id}:wrong"}).status_code in (302, 401)
