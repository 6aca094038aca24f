"""Odd input on the console's pages is a clear 4xx or an empty result, never a 500."""

from __future__ import annotations

import pytest

from tests.helpers.csrf import csrf_token
from tests.helpers.factories import make_user
from tests.helpers.html import browser_login

ODD_GETS = [
    "/admin/users?page=abc",
    "/admin/users?page=99999999999999",
    "/admin/users?q=%00%25_%5C",
    "/admin/users?q=" + "x" * 5000,
    "/admin/users/99999999999999999999999",
    "/admin/users/0",
    "/admin/clients/" + "c" * 300,
    "/admin/clients/%00",
    "/admin/audit?before=99999999999999999999999",
    "/admin/audit?before=0",
    "/admin/audit?actor=%00&action=%00.&target=%00",
    "/admin/audit?since=0000-00-00&until=9999-99-99",
    "/admin/audit?since=9999-12-31T23:59",
    "/admin/keys?user=%00",
    "/admin/keys/%00",
]


@pytest.mark.parametrize("path", ODD_GETS)
def test_odd_console_urls_are_answered_without_a_server_error(client, services, path):
    make_user(services, "root", admin=True)
    browser_login(client, "root")
    assert client.get(path).status_code in (200, 400, 404)


def test_odd_form_values_are_refused_beside_their_fields(client, services):
    make_user(services, "root", admin=True)
    browser_login(client, "root")
    token = csrf_token(client.get("/admin/users").text)
    for data in ({"username": "a\x00b"}, {"username": "x" * 151}, {"username": "ok", "email": "a@b\x00"},
                 {"username": "ok2", "groups": "g" * 65}, {"username": "pkid-20260101-x"}):
        response = client.post("/admin/users", data={"csrf_token": token, **data})
        assert response.status_code in (400, 409), data
    root = services.accounts.find("root")
    response = client.post(f"/admin/users/{root.id}", data={"csrf_token": token, "is_admin": "y", "name": "\x00"})
    assert response.status_code == 400
    clients = csrf_token(client.get("/admin/clients").text)
    for data in ({"name": "x", "redirect_uris": "javascript:alert(1)"}, {"name": "x", "redirect_uris": "\x00"},
                 {"name": "x", "token_endpoint_auth_method": "magic"}, {"name": "x", "grant_types": "implicit"},
                 {"name": "x", "scope": "\x00", "redirect_uris": "https://a.example/cb"}):
        response = client.post("/admin/clients", data={"csrf_token": clients, **data})
        assert response.status_code == 400, data
    assert services.oidc.clients.list_registered() == []
