"""GET /api/authz/forward-auth and /api/authz/auth-request: the Flask side of `handlers.check`."""

from __future__ import annotations

from flask import Blueprint, request

from ..web import respond
from .handlers import METHODS, check

bp = Blueprint("forwardauth", __name__)


# Flask's automatic OPTIONS answer would let a preflight through unchecked.
@bp.route("/api/authz/forward-auth", methods=METHODS, provide_automatic_options=False)
@bp.route("/api/authz/auth-request", methods=METHODS, provide_automatic_options=False)
def forward_auth():
    return respond(check(request))
