"""The browser's form-post sequence over real HTTP: /login → /login/totp → back to `next`."""


import requests

from authserver.cookies import PENDING_LOGIN_COOKIE
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, make_user


def test_real_form_posts_with_real_cookies(live_server, services):
    device, _ = enrol_totp(services, make_user(services, "alice"))
    browser = requests.Session()
    next_url = "/account?tab=security"

    page = browser.get(f"{live_server.url}/login", params={"next": next_url}, timeout=10)
    first = browser.post(f"{live_server.url}/login", allow_redirects=False, timeout=10, data={
        "username": "alice", "password": DEFAULT_PASSWORD, "next": next_url, "csrf_token": csrf_token(page.text)})
    assert first.status_code == 303 and first.headers["Location"] == "/login/totp"
    cookie = first.headers["Set-Cookie"]
    assert f"{PENDING_LOGIN_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/;" in cookie and "Max-Age=300" in cookie

    page = browser.get(f"{live_server.url}/login/totp", timeout=10)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    done = browser.post(f"{live_server.url}/login/totp", allow_redirects=False, timeout=10,
                        data={"code": device.code(), "csrf_token": csrf_token(page.text)})
    assert done.status_code == 303 and done.headers["Location"] == next_url

    me = browser.get(f"{live_server.url}/api/me", timeout=10).json()
    assert me["username"] == "alice" and me["auth_method"] == "password+totp"
    assert "two-factor" in browser.get(f"{live_server.url}{next_url}", timeout=10).text.lower()
