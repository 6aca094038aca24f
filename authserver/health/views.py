"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import text

from ..extensions import db
from ..metrics import render_metrics

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return {"status": "unavailable", "database": "unreachable"}, 503
    finally:
        db.session.remove()
    return {"status": "ok", "database": "ok"}


@bp.get("/metrics")
def metrics():
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
