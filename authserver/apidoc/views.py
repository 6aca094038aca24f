"""GET /api/openapi.json: the OpenAPI 3.1 document of every /api/ route, for this issuer."""

from __future__ import annotations

import json

from flask import Blueprint, Response

from ..openapi import document
from ..web import services

bp = Blueprint("apidoc", __name__)


@bp.get("/api/openapi.json")
def openapi():
    body = json.dumps(document(services().oidc.base), ensure_ascii=False, indent=1)
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
