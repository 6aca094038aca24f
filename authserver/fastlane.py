"""The fast lane: the hottest requests answered without Flask's per-request machinery.

Forward-auth (every request of a photo service behind a proxy), `GET /api/me`,
introspection and the token endpoint are asked thousands of times a second. Through
Flask each pays the request context, URL matching, the before/after hooks and a
Response object: measured, more than the credential check and its indexed read.

This WSGI layer sits in front of Flask (behind `layers.ResponseHeaders`, so the
answers carry the same headers). For /api/me and forward-auth it answers a plain
request itself when the caller is identified (a key, a cookie, a bearer token) and
the rule lets it pass. Introspection and client_credentials tokens it answers
whatever the outcome, errors included, through the very handler the Flask routes
use (`oidc.server.client_endpoint`): once it has done work it never hands the
request on. The code and refresh grants go to Flask before any work.

Everything else goes to Flask unchanged: a request with a body where none belongs,
a refused caller of /api/me or forward-auth (the identity the lane resolved, or the
failure, already counted and audited, travels in the environ and
`current_identity()` takes it from there), a database outage (Flask re-raises it).
"""

from __future__ import annotations

import io
import logging
import time
from functools import cached_property
from urllib.parse import parse_qsl

from flask import json
from werkzeug.datastructures import MultiDict
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from . import layers
from .addresses import peer_address
from .errors import is_database_outage
from .forwardauth.service import ALLOW, BadForwardedRequest, remote_headers
from .forwardauth.views import assess
from .identity import RESOLVED_KEY, AuthenticationFailed
from .layers import CURRENT_ORIGIN, Origin
from .metrics import record_request
from .oidc.server import client_endpoint, token_response

log = logging.getLogger("authserver.fastlane")

ANSWERED_KEY = "authserver.fastlane"  # set in the environ of a request the lane answered
OUTAGE_KEY = "authserver.database_outage"  # the database error the lane met, for Flask to answer
_FORM = "application/x-www-form-urlencoded"
_JSON_HEADERS = (("Content-Type", "application/json"),)
_EMPTY_HEADERS = (("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0"))


class LaneRequest(Request):
    """werkzeug's Request, with two shortcuts measured on the token endpoint.

    The form is parsed from the body the lane has read, with the standard library
    (werkzeug's streaming form parser costs ten times more on a 40-byte body); the URL
    Authlib asks for is built plainly, where werkzeug converts it to an IRI (a tenth
    of a token request's time): the lane's paths are fixed ASCII and Authlib only
    checks the URL's scheme.
    """

    def __init__(self, environ, body: bytes):
        super().__init__(environ)
        self.body = body

    @cached_property
    def form(self) -> MultiDict:
        """The urlencoded body the lane read already (`_plain` admits no other kind)."""
        if not self.body:
            return MultiDict()
        return MultiDict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @cached_property
    def url(self) -> str:
        query = self.environ.get("QUERY_STRING", "")
        base = f"{self.scheme}://{self.host}{self.environ.get('SCRIPT_NAME', '')}{self.path}"
        return f"{base}?{query}" if query else base


class FastLane:
    def __init__(self, app, downstream):
        self.app = app
        self.downstream = downstream
        self.services = app.extensions["authserver"]
        self.max_body = self.services.settings.max_body_bytes
        self.routes = {
            ("GET", "/api/me"): self.me,
            ("GET", "/api/authz/forward-auth"): self.forward_auth,
            ("GET", "/api/authz/auth-request"): self.forward_auth,
            ("POST", "/oauth/introspect"): self.introspect,
            ("POST", "/oauth/token"): self.token,
        }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        handler = self.routes.get((method, path))
        if handler is None or not self._plain(environ, method):
            return self.downstream(environ, start_response)
        started = time.perf_counter()
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])) if method == "POST" else b""
        environ["wsgi.input"] = io.BytesIO(body)
        rid = layers.request_id(environ)
        origin = CURRENT_ORIGIN.set(Origin(rid, environ.get("REMOTE_ADDR") or "", environ.get("HTTP_USER_AGENT", ""),
                                           method, path))
        try:
            with self.app.app_context():
                answer = handler(LaneRequest(environ, body))
        except Exception as exc:  # the full stack answers it: its error pages, its logs
            if is_database_outage(exc):
                # Flask answers 503 with this very error, without waiting out a second connect.
                environ[OUTAGE_KEY] = exc
            else:
                log.warning("fast lane passed a request on after an exception", exc_info=True)
            answer = None
        finally:
            CURRENT_ORIGIN.reset(origin)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the body afresh
            return self.downstream(environ, start_response)
        status, headers, body = answer
        environ[ANSWERED_KEY] = True
        record_request(path, method, int(status[:3]), time.perf_counter() - started,
                       {"request_id": rid, "method": method, "path": path})
        start_response(status, [*headers, ("Content-Length", str(len(body)))] if body else list(headers))
        return [body]

    def _plain(self, environ, method: str) -> bool:
        """No body where none belongs; a form body of a stated, acceptable length where one does."""
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return False
        length = environ.get("CONTENT_LENGTH") or "0"
        if method == "GET":
            return length == "0"
        return (
            length.isdigit() and 0 < int(length) <= self.max_body
            and environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() == _FORM
        )

    # -- identity: /api/me and forward-auth ------------------------------------

    def _resolve(self, req: Request):
        """The identity chain's answer, kept in the environ for Flask should the lane pass."""
        try:
            identity = self.services.identity.resolve(req)
        except AuthenticationFailed as exc:
            req.environ[RESOLVED_KEY] = (None, exc)
            raise
        req.environ[RESOLVED_KEY] = (identity, None)
        return identity

    def me(self, req: Request):
        try:
            identity = self._resolve(req)
        except AuthenticationFailed:
            return None
        if identity is None:
            return None
        response = self.app.json.response(identity.as_json())
        return "200 OK", _JSON_HEADERS, response.get_data()

    def forward_auth(self, req: Request):
        try:
            verdict = assess(self.services.forward_auth, peer_address(req.environ), req.headers,
                             lambda: self._resolve(req))
        except BadForwardedRequest:
            return None
        if verdict.decision.verdict != ALLOW:
            return None
        return "200 OK", (*_EMPTY_HEADERS, *remote_headers(verdict.identity).items()), b""

    # -- OAuth endpoints, by Authlib --------------------------------------------

    def introspect(self, req: Request):
        endpoint = self.services.oidc.introspection
        return self._client_endpoint(req, lambda: endpoint(endpoint.create_endpoint_request(req)))

    def token(self, req: Request):
        # client_credentials only: the code and refresh grants go to Flask before any work is
        # done (their failures write audit rows, which must be written once).
        if req.form.get("grant_type") != "client_credentials":
            return None
        server = self.services.oidc.server
        return self._client_endpoint(req, lambda: token_response(server, server.create_oauth2_request(req)))

    def _client_endpoint(self, req: Request, run):
        # Client secrets only: an assertion (private_key_jwt) records its jti, a write the
        # lane must not make before it knows it will answer.
        if "client_assertion" in req.form:
            return None
        # From here on the lane answers whatever happens: the same handler as the Flask route.
        status, body, headers = client_endpoint(req, run, throttle=self.services.throttle, audit=self.services.audit)
        payload = json.dumps(body) if isinstance(body, dict) else body
        return f"{status} {HTTP_STATUS_CODES.get(status, '')}".rstrip(), list(headers), payload.encode()
