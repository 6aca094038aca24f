"""The OpenAPI 3.1 document of the JSON API: valid, served, and describing exactly the /api/ routes
that exist (a route added without a description fails here, and so does a description left behind)."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from authserver.openapi import document
from tests.helpers.openapi import described_operations, routed_operations


def test_the_document_is_valid_openapi_3_1():
    doc = document("https://auth.example.org")
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_it_is_served_for_this_issuer(client, services):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json["servers"] == [{"url": services.oidc.base}]
    validate(response.json)


def test_every_api_route_is_described_and_every_description_is_routed(app):
    routed, described = routed_operations(app), described_operations(document("http://x"))
    assert routed - described == set(), "routes without a description in authserver/openapi.py"
    assert described - routed == set(), "descriptions of routes that do not exist"


def test_a_route_added_without_a_description_is_caught(app):
    app.add_url_rule("/api/photos/<int:photo_id>", "undescribed", lambda photo_id: {}, methods=["GET"])
    assert routed_operations(app) - described_operations(document("http://x")) == {("get", "/api/photos/{photo_id}")}


@pytest.mark.parametrize("method,path", sorted(described_operations(document("http://x"))))
def test_each_operation_says_what_it_does_and_how_callers_authenticate(method, path):
    operation = document("http://x")["paths"][path][method]
    assert operation.get("operationId") and operation.get("summary") and operation.get("description")
    assert "security" in operation or "security" in document("http://x")
    assert operation["responses"], f"{method.upper()} {path} lists no responses"
