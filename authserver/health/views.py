"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from sqlalchemy import text

from ..access_rules import address_in
from ..crypto import same
from ..errors import ApiError
from ..extensions import db
from ..metrics import render_metrics
from ..web import respond
from . import handlers

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return respond(handlers.healthz(request))


@bp.get("/readyz")
def readyz():
    try:
        db.session.execute(text("SELECT 1"))
        # The key every instance seals with (the database's record), in this one's keyring.
        missing = current_app.extensions["authserver"].sealer.missing_sealing_key()
    except Exception:
        db.session.rollback()
        return {"status": "unavailable", "database": "unreachable"}, 503
    finally:
        db.session.remove()
    if missing:
        return {"status": "unavailable", "database": "ok", "master_key": f"missing key {missing}"}, 503
    return {"status": "ok", "database": "ok"}


@bp.get("/metrics")
def metrics():
    """Prometheus text; restricted by AUTHSERVER_METRICS_TOKEN (bearer) and AUTHSERVER_METRICS_ADDRESSES."""
    settings = current_app.extensions["authserver"].settings
    if settings.metrics_addresses and not address_in(request.remote_addr, settings.metrics_addresses):
        raise ApiError(403, "forbidden", "Metrics are not served to this address (AUTHSERVER_METRICS_ADDRESSES).")
    if settings.metrics_token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not same(value.strip(), settings.metrics_token):
            raise ApiError(
                401,
                "unauthorized",
                "Send the metrics token: Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>.",
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
