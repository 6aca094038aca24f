"""A real nginx (`auth_request`) in front of an echoing upstream, with the app on a live server.

nginx runs the shipped example, config/examples/nginx-forward-auth.conf, with
only its `listen` line changed; everything nginx writes stays in the test's
temp directory. Skipped, saying why, when nginx is not installed (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from authserver.accounts.service import SESSION_COOKIE
from authserver.forwardauth.rules import load_rules, parse_host_patterns
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, make_user

from .proxies import EXAMPLES, EchoUpstream, free_port, stop, wait_for_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)"),
]

HOST = "photos.test"
RULES = [{"host": HOST, "path": "/share", "policy": "bypass"}]

WRAPPER = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream authserver {{ server 127.0.0.1:{app_port}; }}
    upstream photos {{ server 127.0.0.1:{upstream_port}; }}
    include {tmp}/site.conf;
}}
"""


@pytest.fixture
def settings(backend, database_urls, tmp_path):
    return make_settings(
        tmp_path,
        database_urls[backend],
        issuer="http://auth.photos.test",
        forward_auth_rules=load_rules(json.dumps(RULES), "one_factor", base=tmp_path),
        forward_auth_domains=parse_host_patterns(HOST),
    )


@pytest.fixture
def nginx(live_server, tmp_path):
    """The base URL of nginx running the example configuration."""
    run = tmp_path / "nginx"
    run.mkdir()
    port = free_port()
    site = (EXAMPLES / "nginx-forward-auth.conf").read_text()
    assert site.count("listen 80;") == 1
    (run / "site.conf").write_text(site.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    with EchoUpstream() as upstream:
        (run / "nginx.conf").write_text(
            WRAPPER.format(
                tmp=run,
                # As root nginx would switch its worker to "nobody", which cannot use the temp dir.
                user="user root;" if os.geteuid() == 0 else "",
                app_port=live_server.port,
                upstream_port=upstream.port,
            )
        )
        log = run / "error.log"
        process = subprocess.Popen(
            [NGINX, "-p", str(run), "-c", str(run / "nginx.conf"), "-e", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


def get(base, path, browser=None, **headers):
    """A request to the gallery's host through nginx, carrying the browser's session cookie if any."""
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


def test_no_credentials_api_location_is_401(nginx):
    response = get(nginx, "/api/albums")
    assert response.status_code == 401


def test_no_credentials_browser_location_redirects_to_login_with_next(nginx):
    response = get(nginx, "/albums/7?sort=date")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert (location.netloc, location.path) == ("auth.photos.test", "/login")
    assert parse_qs(location.query) == {"next": [f"http://{HOST}/albums/7?sort=date"]}


def test_session_cookie_passes_and_the_upstream_sees_who(nginx, live_server, services):
    browser = logged_in(live_server, services)
    for path in ("/api/albums", "/albums/7"):
        response = get(nginx, path, browser)
        assert response.status_code == 200
        seen = response.json()["headers"]
        assert seen["Remote-User"] == "alice"
        assert seen["Remote-Email"] == "alice@photos.test"
        assert seen["Remote-Name"] == "Alice Liddell"
        assert seen["Remote-Groups"] == "family,admins"
        assert seen["Remote-Auth-Method"] == "password"


def test_after_logout_the_session_no_longer_passes(nginx, live_server, services):
    browser = logged_in(live_server, services)
    assert get(nginx, "/api/albums", browser).status_code == 200
    assert browser.post(live_server.url + "/api/session/logout", json={}, timeout=10).status_code == 200
    assert get(nginx, "/api/albums", browser).status_code == 401
    browser.cookies.clear()
    assert get(nginx, "/api/albums", browser).status_code == 401


def test_a_client_cannot_spoof_remote_headers(nginx, live_server, services):
    spoof = {"Remote-User": "admin", "Remote-Groups": "admins", "Remote-Auth-Method": "password+totp"}
    assert get(nginx, "/api/albums", **spoof).status_code == 401
    assert get(nginx, "/albums", **spoof).status_code == 302
    # Under a bypass rule the request passes, but the forged identity is stripped.
    shared = get(nginx, "/share/abc", **spoof)
    assert shared.status_code == 200
    assert shared.json()["headers"] == {}
    # Logged in as alice, the upstream sees alice, not the forged admin.
    browser = logged_in(live_server, services)
    seen = get(nginx, "/api/albums", browser, **spoof).json()["headers"]
    assert seen["Remote-User"] == "alice"
    assert seen["Remote-Auth-Method"] == "password"
