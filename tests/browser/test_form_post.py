"""response_mode=form_post in a real Chromium with JavaScript on: the page posts the code to the
app by itself under the site's Content-Security-Policy (script-src 'self', no inline script)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

import pytest

from tests.helpers.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.helpers.oidc import pkce_pair

pytestmark = pytest.mark.browser


class App:
    """The relying party's redirect URI: records what was posted to it."""

    def __init__(self):
        self.posted: list[dict] = []
        self.arrived = threading.Event()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                app.posted.append({k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()})
                app.arrived.set()
                body = b"<!doctype html><title>Gallery</title><p id=landed>signed in</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/cb"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_form_post_delivers_the_code_with_javascript_under_the_csp(browser, live_server, services):
    app = App()
    try:
        make_user(services, "hana")
        gallery, _ = make_client(services, "Holiday Photos", redirect_uris=(app.url,), trusted=True)
        context = browser.new_context(base_url=live_server.url, java_script_enabled=True)
        violations: list[str] = []
        page = context.new_page()
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        _, challenge = pkce_pair()
        page.goto("/login")
        page.get_by_label("Username").fill("hana")
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in", exact=True).click()
        page.goto("/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": gallery.client_id, "redirect_uri": app.url, "scope": "openid",
            "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256",
            "response_mode": "form_post"}))
        assert app.arrived.wait(15), "the page did not post itself"
        page.wait_for_selector("#landed")
        [posted] = app.posted
        assert posted["state"] == "st-1" and posted["code"] and posted["iss"]
        assert violations == []
        context.close()
    finally:
        app.stop()
