"""Every account and admin page, found from the URL map so pages added later are covered too:
logged out goes to the login page (and back after), a non-admin gets 403 on admin pages."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.routing import IntegerConverter

from authserver import create_app
from tests.helpers.factories import make_key, make_user
from tests.helpers.html import browser_login
from tests.helpers.settings import make_settings

SECTIONS = ("/account", "/admin")


def page_paths(app, prefix: str) -> list[str]:
    """GET rules under `prefix`, with placeholder values for their variables."""
    paths = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or not (rule.rule == prefix or rule.rule.startswith(prefix + "/")):
            continue
        values = {name: 1 if isinstance(conv, IntegerConverter) else "x" for name, conv in rule._converters.items()}
        paths.add(rule.build(values, append_unknown=False)[1])
    return sorted(paths)


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, list[str]]:
    app = create_app(make_settings(tmp_path_factory.mktemp("routes"), "sqlite://"))
    return {prefix: page_paths(app, prefix) for prefix in SECTIONS}


def test_the_route_list_holds_the_known_pages(routes):
    assert {"/account", "/account/keys", "/account/totp"} <= set(routes["/account"])
    assert {"/admin", "/admin/users", "/admin/users/1", "/admin/audit", "/admin/keys", "/admin/keys/x",
            "/admin/clients", "/admin/clients/x", "/admin/signing-keys"} <= set(routes["/admin"])


def test_every_page_sends_a_logged_out_visitor_to_the_login_page(client, routes):
    for path in routes["/account"] + routes["/admin"]:
        response = client.get(path)
        assert response.status_code == 302, path
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login", path
        assert parse_qs(location.query)["next"] == [path], path


def test_every_admin_page_is_forbidden_to_a_non_admin(client, services, routes):
    make_user(services, "carol")
    assert browser_login(client, "carol").status_code == 303
    for path in routes["/admin"]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "administrator" in response.text, path


def test_account_pages_open_for_a_signed_in_user(client, services, routes):
    make_user(services, "carol")
    browser_login(client, "carol")
    for path in routes["/account"]:
        if "/x" not in path and "/1" not in path:
            assert client.get(path).status_code == 200, path


def test_admin_pages_open_for_an_admin(client, services, routes):
    make_user(services, "root", admin=True)
    browser_login(client, "root")
    for path in routes["/admin"]:
        if not path.endswith(("/x", "/1")):
            assert client.get(path).status_code == 200, path


def test_a_key_session_cannot_reach_the_admin_console_without_the_admin_scope(client, services):
    admin = make_user(services, "root", admin=True)
    key_id, secret = make_key(services, admin, scopes=["photos:read"])
    assert client.post("/api/session/login", json={"username": key_id, "password": secret}).status_code == 200
    assert client.get("/admin/users").status_code == 403


def test_the_overview_counts_what_it_names(client, services):
    """It showed `<built-in method keys of dict …>` where the number of API keys belongs."""
    root = make_user(services, "root", admin=True)
    make_key(services, root)
    make_key(services, root)
    browser_login(client, "root")
    page = client.get("/admin").text
    assert "built-in method" not in page
    assert '<dt>Unrevoked API keys</dt><dd><a href="/admin/keys">2</a></dd>' in page
