"""authserver: an OAuth 2.0 / OpenID Connect provider with an API-key vault and TOTP."""

from __future__ import annotations

import logging
import os
import re
import secrets
import time

from flask import Flask, abort, g, request
from sqlalchemy.orm import configure_mappers

from . import errors, extensions, jsonapi, logs, web
from .clock import Clock, SystemClock
from .metrics import LATENCY, REQUESTS
from .services import build_services
from .settings import Settings
from .web import CookieSessionInterface

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
access_log = logging.getLogger("authserver.access")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    settings = settings or Settings.from_env(os.environ)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.json = jsonapi.StrictJSONProvider(app)
    app.config.from_mapping(settings.flask_config())
    app.url_map.converters["int"] = web.DatabaseInt
    app.session_interface = CookieSessionInterface()
    logs.configure(settings.log_level)
    extensions.init_app(app)
    app.extensions["authserver"] = build_services(settings, clock or SystemClock())

    import keyvault

    from . import accounts, admin, broker, health, models, oidc  # noqa: F401  (models: every table on the metadata)

    # Configure every mapper now, in one thread: the hot paths build ORM objects from rows
    # without a query, which would otherwise race the lazy configuration under threads.
    configure_mappers()

    from .forwardauth import views as forwardauth

    # The totp package does not import its views itself: accounts imports totp.service.
    from .totp.views import bp as totp_bp

    for blueprint in (health.bp, accounts.bp, totp_bp, keyvault.bp, oidc.bp, forwardauth.bp, broker.bp, admin.bp):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    _install_request_hooks(app, settings)
    return app


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        g.started = time.perf_counter()
        # One identity per request, even when tests reuse an app context across requests.
        g.pop("_identity", None)
        g.pop("_identity_error", None)
        g.pop("csrf_token", None)  # Flask-WTF's per-request cache of the form token
        # Refuse an oversized body up front, whether or not the view would read it. A chunked
        # body announces no length: read it here (at most one byte past the limit; the views
        # get the cached copy), since the stream would otherwise end quietly at the limit.
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            abort(413)
        if request.content_length is None and request.method in _WRITES and request.environ.get("wsgi.input_terminated"):
            if len(request.get_data(cache=True)) > settings.max_body_bytes:
                abort(413)
        # Pages take form posts only. Flask-WTF would otherwise read a JSON body as form
        # data, where arrays and numbers break its fields.
        if request.method in _WRITES and request.is_json and not errors.is_json_path(request.path):
            raise errors.ApiError(
                415, "unsupported_media_type", "This page takes form submissions, not JSON; use the /api/ endpoints."
            )

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        _security_headers(response, settings)
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        elapsed = time.perf_counter() - g.started if "started" in g else 0.0
        LATENCY.labels(endpoint).observe(elapsed)
        # The path only: query strings can carry codes and tokens.
        access_log.info("request", extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 2)})
        return response


_SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
_NO_STORE = ("Cache-Control", "no-store")
_NO_STORE_PREFIXES = ("/api/", "/login", "/oauth/", "/account", "/admin")


def _security_headers(response, settings: Settings) -> None:
    """Adds each header the view did not set itself.

    One pass over the response's headers: werkzeug's `setdefault` scans them all
    (and raises internally) once per name, a measurable share of a forward-auth request.
    """
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    wanted = list(_SECURITY_HEADERS)
    if settings.is_https:
        wanted.append(_HSTS)
    if request.path.startswith(_NO_STORE_PREFIXES):
        wanted.append(_NO_STORE)
    for name, value in wanted:
        if name.lower() not in present:
            headers.add(name, value)
