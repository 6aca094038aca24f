"""The client-authenticated endpoints, written once: the Flask routes and the dispatch before
Flask both call these. Each runs Authlib's endpoint through `server.client_endpoint` (one
client throttle, one audit) to a whole answer, errors included."""

from __future__ import annotations

from werkzeug.wrappers import Request

from ..errors import Answer, json_bytes
from ..web import services
from .server import client_endpoint, may_keep_client, token_response


def token(req: Request) -> Answer:
    server = services().oidc.server
    return _answer(req, lambda: token_response(server, server.create_oauth2_request(req)))


def introspect(req: Request) -> Answer:
    oidc = services().oidc
    endpoint = oidc.introspection

    def answer():
        return endpoint(endpoint.create_endpoint_request(req))

    # Decided on the worker's kept row of the calling client; the first token read confirms it.
    return _answer(req, lambda: oidc.clients.decide(answer) if may_keep_client(req.form) else answer())


def revoke(req: Request) -> Answer:
    endpoint = services().oidc.revocation
    return _answer(req, lambda: endpoint(endpoint.create_endpoint_request(req)))


def device_authorization(req: Request) -> Answer:
    endpoint = services().oidc.device_authorization
    return _answer(req, lambda: endpoint(endpoint.create_endpoint_request(req)))


def pushed_authorization(req: Request) -> Answer:
    endpoint = services().oidc.pushed_authorization
    return _answer(req, lambda: endpoint(endpoint.create_endpoint_request(req)))


def _answer(req: Request, run) -> Answer:
    svc = services()
    status, body, headers = client_endpoint(req, run, throttle=svc.throttle, audit=svc.audit)
    payload = json_bytes(body) if isinstance(body, dict) else str(body).encode()
    return Answer(status, list(headers), payload)
