"""Malformed requests to the OAuth endpoints get RFC 6749 errors (4xx JSON), never a 500."""

from urllib.parse import urlencode

import pytest

from tests.helpers.factories import make_client, make_user
from tests.helpers.oidc import logged_in


@pytest.mark.parametrize("headers,data", [
    ({"Authorization": "Basic !!!notbase64"}, {"grant_type": "client_credentials"}),
    ({"Authorization": "Basic " + "YTpi" * 2}, {"grant_type": "client_credentials"}),
    ({"Authorization": "Bearer x"}, {"grant_type": "client_credentials"}),
    ({}, {"grant_type": "authorization_code", "code": "x" * 5000, "client_id": "c"}),
    ({}, {"grant_type": "refresh_token", "refresh_token": "\x00", "client_id": "c"}),
    ({}, {"grant_type": "client_credentials",
          "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
          "client_assertion": "not.a.jwt"}),
    ({}, {"grant_type": "client_credentials",
          "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
          "client_assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOjF9."}),
])
def test_malformed_token_requests_are_4xx(client, headers, data):
    response = client.post("/oauth/token", data=data, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json["error"]


def test_json_body_at_the_token_endpoint_is_an_oauth_error(client, services):
    gallery, secret = make_client(services, grants=["client_credentials"], scope="photos:read")
    response = client.post("/oauth/token", json={"grant_type": "client_credentials"}, auth=(gallery.client_id, secret))
    assert response.status_code == 400 and response.json["error"] == "unsupported_grant_type"


def test_huge_body_is_413(client):
    response = client.post("/oauth/token", data={"grant_type": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413 and response.json["error"]


@pytest.mark.parametrize("query", [
    {"client_id": "x" * 500, "response_type": "code", "redirect_uri": "https://a/b"},
    {"client_id": ["a", "b"], "response_type": "code"},
    {"response_type": "code"},
    {},
])
def test_malformed_authorization_requests_get_an_error_page(client, query):
    response = client.get("/oauth/authorize", query_string=query)
    assert response.status_code == 400 and "Location" not in response.headers


def test_duplicate_parameters_are_refused(client, services):
    gallery, _ = make_client(services)
    query = [("response_type", "code"), ("client_id", gallery.client_id), ("redirect_uri", "https://gallery.example/callback"),
             ("scope", "openid"), ("scope", "email")]
    make_user(services, "alice")
    logged_in(client, "alice")
    response = client.get("/oauth/authorize?" + urlencode(query))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "scope appears more than once" in response.text
