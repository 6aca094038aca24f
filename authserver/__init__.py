"""authserver: an OAuth 2.0 / OpenID Connect provider with an API-key vault and TOTP."""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, abort, g, request
from sqlalchemy.orm import configure_mappers

from . import errors, extensions, jsonapi, layers, logs, web
from .addresses import ClientAddress
from .clock import Clock, SystemClock
from .fastlane import OUTAGE_KEY, FastLane
from .metrics import record_request
from .services import build_services
from .settings import Settings
from .web import CookieSessionInterface

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
    if settings.fast_lane:
        app.wsgi_app = FastLane(app, app.wsgi_app)
    app.wsgi_app = layers.ResponseHeaders(app.wsgi_app, https=settings.is_https)
    # Outermost: everything inside sees the client's address in REMOTE_ADDR (authserver/addresses.py).
    app.wsgi_app = ClientAddress(app.wsgi_app, settings.trusted_proxies)

    @app.before_request
    def _start():
        req = request._get_current_object()
        state = g._get_current_object()
        state.request_id = layers.request_id(req.environ)
        outage = req.environ.get(OUTAGE_KEY)
        if outage is not None:  # the fast lane found the database down a moment ago
            raise outage
        state.started = time.perf_counter()
        # One identity per request, even when tests reuse an app context across requests.
        state.__dict__.pop("_identity", None)
        state.__dict__.pop("_identity_error", None)
        state.__dict__.pop("csrf_token", None)  # Flask-WTF's per-request cache of the form token
        # Refuse an oversized body up front, whether or not the view would read it. A chunked
        # body announces no length: read it here (at most one byte past the limit; the views
        # get the cached copy), since the stream would otherwise end quietly at the limit.
        length = req.content_length
        if length is not None and length > settings.max_body_bytes:
            abort(413)
        method = req.method
        if method in _WRITES:
            chunked = length is None and req.environ.get("wsgi.input_terminated")
            if chunked and len(req.get_data(cache=True)) > settings.max_body_bytes:
                abort(413)
            # Pages take form posts only. Flask-WTF would otherwise read a JSON body as form
            # data, where arrays and numbers break its fields.
            if req.is_json and not errors.is_json_path(req.path):
                raise errors.ApiError(
                    415, "unsupported_media_type", "This page takes form submissions, not JSON; use the /api/ endpoints."
                )

    # After _start (which clears the per-request identity), so it judges this request's cookie.
    from .accounts.views import bind_csrf_to_session

    app.before_request(bind_csrf_to_session)

    @app.after_request
    def _finish(response):
        req = request._get_current_object()
        state = g._get_current_object()
        started = getattr(state, "started", None)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        if response.status_code == 302 and req.method in _WRITES:
            # RFC 9700 §4.11: after a POST, 303 so the browser does not repost the form (and its
            # credentials) to where it is sent.
            response.status_code = 303
        record_request(req.url_rule.rule if req.url_rule else "unmatched", req.method, response.status_code, elapsed)
        return response

