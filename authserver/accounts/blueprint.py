"""The accounts blueprint, shared by its two views modules (the logins; the account pages)."""

from __future__ import annotations

from flask import Blueprint, Response

from ..errors import json_bytes

bp = Blueprint("accounts", __name__)


def json_response(body: dict, status: int = 200) -> Response:
    return Response(json_bytes(body), status, mimetype="application/json")
