"""The dispatch of the hot endpoints: answered before Flask, by the handlers their Flask routes call.

Forward-auth (every request of a photo service behind a proxy), `GET /api/me`,
introspection and the token endpoint are asked thousands of times a second, `/healthz`
by every probe. Through
Flask each pays the request context, URL matching, the before/after hooks and a
Response object: measured, more than the credential check and its indexed read.

Each of these endpoints is written once, as a handler from a werkzeug request to a
whole `Answer` (errors included); its Flask route is a two-line adapter around the
same handler. Here a request for one of them goes straight to its handler and this
layer answers it, whatever happens: a failure the handler did not answer itself (a
database outage, the rate-limit store down, a bug) is rendered by `errors.failure_for`
and `errors.error_answer`, exactly as Flask's error handler renders it. Nothing is
handed to Flask after the choice is made, so nothing runs twice. Request id, headers,
metrics and the access line are the outer layer's (`layers.Edge`), for both.

`AUTHSERVER_FAST_LANE=off` sends every request to Flask (the twin tests compare both).
"""

from __future__ import annotations

import io
from functools import cached_property
from urllib.parse import parse_qsl

from werkzeug.datastructures import EnvironHeaders, MultiDict
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from .accounts import handlers as accounts
from .errors import error_answer, failure_for, http_error
from .forwardauth import handlers as forwardauth
from .health import handlers as health
from .oidc import handlers as oidc

_FORM = "application/x-www-form-urlencoded"


class _Headers(EnvironHeaders):
    """Request headers that are true without being counted: Authlib's `headers or {}` would
    otherwise walk the whole environ once per request."""

    def __bool__(self) -> bool:
        return True


class HotRequest(Request):
    """werkzeug's Request over a body already read, with two shortcuts measured on the token endpoint.

    A urlencoded form is parsed with the standard library (werkzeug's streaming form parser
    costs ten times more on a 40-byte body); the URL Authlib asks for is built plainly,
    where werkzeug converts it to an IRI (a tenth of a token request's time): the hot
    paths are fixed ASCII and Authlib only checks the URL's scheme.
    """

    def __init__(self, environ, body: bytes):
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        super().__init__(environ)
        self.headers = _Headers(environ)
        self.body = body

    @cached_property
    def form(self) -> MultiDict:
        if self.mimetype != _FORM:
            return super().form
        if not self.body:
            return MultiDict()
        return MultiDict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @cached_property
    def url(self) -> str:
        query = self.environ.get("QUERY_STRING", "")
        base = f"{self.scheme}://{self.host}{self.environ.get('SCRIPT_NAME', '')}{self.path}"
        return f"{base}?{query}" if query else base


class Dispatch:
    def __init__(self, app, downstream):
        self.app = app
        self.downstream = downstream
        self.max_body = app.extensions["authserver"].settings.max_body_bytes
        self.routes = {
            ("GET", "/api/me"): accounts.me,
            ("POST", "/oauth/introspect"): oidc.introspect,
            ("POST", "/oauth/token"): oidc.token,
            ("GET", "/healthz"): health.healthz,
        }
        for method in forwardauth.METHODS:
            for path in forwardauth.REDIRECT_STATUS:
                self.routes[(method, path)] = forwardauth.check

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        handler = self.routes.get((method, environ.get("PATH_INFO", "")))
        if handler is None:
            return self.downstream(environ, start_response)
        with self.app.app_context():
            body = self._body(environ, method)
            if body is None:
                answer = error_answer(http_error(413))
            else:
                try:
                    answer = handler(HotRequest(environ, body))
                except Exception as exc:  # rendered as Flask's error handler renders it
                    answer = error_answer(failure_for(exc))
        status, headers, payload = answer
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, '').upper()}".rstrip(),  # as werkzeug writes it
                       [*headers, ("Content-Length", str(len(payload)))])
        return [b"" if method == "HEAD" else payload]

    def _body(self, environ, method: str) -> bytes | None:
        """The request body (none for GET and HEAD, as Flask's views read none), or None past the limit."""
        # A chunked body's Content-Length (if any) means nothing, as for werkzeug.
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        length = "" if chunked else environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > self.max_body:
            return None
        if method in ("GET", "HEAD"):
            return b""
        stream = environ["wsgi.input"]
        if length.isdigit():
            return stream.read(int(length))
        if environ.get("wsgi.input_terminated"):  # chunked: read at most one byte past the limit
            body = stream.read(self.max_body + 1)
            return None if len(body) > self.max_body else body
        return b""
