"""authserver: an OAuth 2.0 / OpenID Connect provider with an API-key vault and TOTP."""

from __future__ import annotations

import os

from flask import Flask, abort, g, request
from sqlalchemy.orm import configure_mappers

import keyvault

from . import (
    accounts,
    admin,
    apidoc,
    broker,
    dispatch,
    errors,
    extensions,
    forwardauth,
    health,
    jsonapi,
    layers,
    logs,
    mail,
    models,  # noqa: F401  (every table on the metadata)
    oidc,
    totp,
    web,
)
from .addresses import ClientAddress
from .clock import Clock, SystemClock
from .mail.outbox import MailWorker
from .services import build_services
from .settings import Settings


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    settings = settings or Settings.from_env(os.environ)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.json = jsonapi.StrictJSONProvider(app)
    app.config.from_mapping(settings.flask_config())
    app.url_map.converters["int"] = web.DatabaseInt
    app.session_interface = web.CookieSessionInterface()
    logs.configure(settings.log_level)
    extensions.init_app(app)
    app.extensions["authserver"] = build_services(settings, clock or SystemClock())

    # Every mapper configured now, in one thread, rather than lazily by the first requests.
    configure_mappers()
    for blueprint in (health.bp, accounts.bp, totp.bp, keyvault.bp, oidc.bp, forwardauth.bp, broker.bp, admin.bp,
                      mail.bp, apidoc.bp):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    _install_request_hooks(app, settings)
    _install_mail_worker(app)
    if settings.fast_lane:
        app.wsgi_app = dispatch.Dispatch(app, app.wsgi_app)
    app.wsgi_app = layers.Edge(app.wsgi_app, https=settings.is_https, endpoint=layers.EndpointNames(app.url_map),
                               access_line=logs.access_line, secret_paths=layers.secret_paths(app.url_map))
    # Outermost: everything inside sees the client's address in REMOTE_ADDR (authserver/addresses.py).
    app.wsgi_app = ClientAddress(app.wsgi_app, settings.trusted_proxies)
    return app


def _install_mail_worker(app: Flask) -> None:
    """The outbox's worker thread, started by the first request this process serves (after any
    fork of the WSGI server; CLI commands never start it). Under TESTING the tests drain the
    outbox themselves, or start the worker."""
    outbox = app.extensions["authserver"].mail.outbox
    if outbox is None:
        return
    outbox.worker = MailWorker(app, outbox)

    @app.before_request
    def _start_mail_worker():
        if not app.testing and not outbox.worker.running:
            outbox.worker.start()


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _start():
        req = request._get_current_object()
        state = g._get_current_object()
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
        if req.method in layers.WRITES:
            chunked = length is None and req.environ.get("wsgi.input_terminated")
            if chunked and len(req.get_data(cache=True)) > settings.max_body_bytes:
                abort(413)
            # Pages take form posts only. Flask-WTF would otherwise read a JSON body as form
            # data, where arrays and numbers break its fields.
            if req.is_json and not errors.is_json_path(req.path):
                raise errors.ApiError(
                    415,
                    "unsupported_media_type",
                    "This page takes form submissions, not JSON; use the /api/ endpoints.",
                )

    # After _start (which clears the per-request identity), so it judges this request's cookie.
    app.before_request(web.bind_csrf_to_session)
