"""Broker test helpers: what the live server fixture yields, and a thin mobile app that drives the
broker over real HTTP, with a browser for the login in between."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin

import requests

from authserver.clock import FixedClock
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_client
from tests.helpers.html import form_action

APP_SCHEME = "app.immich:///oauth-callback"
WEB_CALLBACK = "https://photos.example/api/oauth/mobile-redirect"
OLD_APP = "Immich/1.94.0 (Android 13)"


@dataclass
class BrokerLive:
    app: object
    url: str
    services: object
    clock: FixedClock


def broker_client(live, name: str = "Immich app", *, redirect_uris=(APP_SCHEME, WEB_CALLBACK), public: bool = True,
                  **options):
    """A client registered with --broker (public by default, like a mobile app)."""
    client, secret = make_client(live.services, name, redirect_uris=redirect_uris, public=public, broker=True,
                                 scope="openid profile email groups offline_access", **options)
    return client, secret


def browser_sign_in(live, authorization_url: str, *, username: str = "alice", allow: bool = True) -> str:
    """The system browser the app opens: /login form, consent if asked; returns the redirect it ends on."""
    browser = requests.Session()
    response = browser.get(authorization_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    assert response.headers["Location"].startswith("/login?next=")
    page = browser.get(urljoin(live.url, response.headers["Location"]), timeout=10)
    next_value = re.search(r'name="next" type="hidden" value="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    response = browser.post(live.url + "/login", allow_redirects=False, timeout=10, data={
        "username": username, "password": DEFAULT_PASSWORD, "csrf_token": csrf_token(page.text), "next": next_value})
    assert response.status_code == 303, response.text
    response = browser.get(urljoin(live.url, response.headers["Location"]), allow_redirects=False, timeout=10)
    if response.status_code == 200:
        response = browser.post(live.url + form_action(response.text), allow_redirects=False, timeout=10,
                                data={"csrf_token": csrf_token(response.text), ("allow" if allow else "deny"): "x"})
        assert response.status_code == 303, response.text
    else:
        assert response.status_code == 302, response.text
    return response.headers["Location"]


def without_param(url: str, name: str) -> str:
    """The URL with one query parameter dropped, the rest kept as written (custom schemes intact)."""
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    return base + ("?" + urlencode(kept) if kept else "")


def with_param(url: str, name: str, value: str) -> str:
    base, _, query = url.partition("?")
    pairs = [(k, value if k == name else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return base + "?" + urlencode(pairs)


class MobileApp:
    """A thin gallery app that lets the broker run the OAuth dance; `version` goes in User-Agent."""

    def __init__(self, live, client_id: str, *, version: str = OLD_APP, redirect_uri: str = APP_SCHEME):
        self.live = live
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.http = requests.Session()
        self.http.headers["User-Agent"] = version

    def start(self, **extra) -> requests.Response:
        body = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, **extra}
        return self.http.post(self.live.url + "/api/oauth/authorize", json=body, timeout=10)

    def started(self, **extra) -> dict:
        response = self.start(**extra)
        assert response.status_code == 200, response.text
        return response.json()

    def callback(self, **body) -> requests.Response:
        return self.http.post(self.live.url + "/api/oauth/callback", json=body, timeout=30)

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(self.live.url + "/oauth/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {access_token}"})


def assert_broker_error(response, error: str, *phrases: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error, body
    for phrase in phrases:
        assert phrase in body["error_description"], body
    return body
