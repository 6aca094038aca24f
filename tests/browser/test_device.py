"""A photo frame signed in with the device flow: the device program in its own process, the
person on a phone-sized Chromium (JavaScript off) opening the link the frame shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers.browser import PHONE, Browsing, follow
from tests.helpers.factories import DEFAULT_PASSWORD, make_client, make_user
from tests.helpers.servers import app_at_own_issuer

pytestmark = pytest.mark.browser

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "device_login.py"


@pytest.fixture
def own_issuer(backend, database_urls, tmp_path):
    """The server at the URL its discovery names, so the device program can follow it."""
    with app_at_own_issuer(database_urls[backend], tmp_path) as served:
        yield served


def test_a_photo_frame_is_connected_from_a_phone(browser, own_issuer, request, tmp_path):
    services, url = own_issuer
    make_user(services, "hana")
    frame, _ = make_client(services, "Living-room Frame", redirect_uris=(), public=True,
                           scope="openid profile offline_access", grants=("device_code", "refresh_token"))
    program = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--issuer", url, f"--client-id={frame.client_id}",
         "--tokens", str(tmp_path / "tokens.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = program.stdout.readline()
        assert first, f"the device program showed no code: {program.stderr.read()}"
        shown = json.loads(first)
        phone = Browsing(browser, url, request.node.name, viewport=PHONE)
        page = phone.page
        link = urlsplit(shown["verification_uri_complete"])
        page.goto(f"{link.path}?{link.query}")
        assert urlsplit(page.url).path == "/login"  # sign in first, then back to the code
        page.get_by_label("Username").fill("hana")
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        follow(page.get_by_role("button", name="Sign in"))
        assert urlsplit(page.url).path == "/device"
        assert page.get_by_label("Code shown on your device").input_value() == shown["user_code"]
        assert phone.fits_the_screen()
        phone.shot("device-code")
        follow(page.get_by_role("button", name="Continue"))
        assert page.locator("#device-client").inner_text() == "Living-room Frame"
        assert page.locator("#device-user-code").inner_text() == shown["user_code"]
        assert phone.fits_the_screen()
        phone.shot("device-consent")
        follow(page.locator("#device-allow"))
        assert page.locator("#device-done-h").inner_text() == "Device connected"
        phone.shot("device-done")
        assert program.wait(timeout=30) == 0, program.stderr.read()
        phone.close()
    finally:
        program.kill()
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    me = requests.get(url + "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                      timeout=10)
    assert me.json()["preferred_username"] == "hana"
