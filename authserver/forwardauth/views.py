"""GET /api/authz/forward-auth (Traefik, Caddy) and /api/authz/auth-request (nginx).

Both answer the same question the same way; they differ only in how a
redirect to the login page is expressed: a 302 for proxies that pass the
answer through, a 401 carrying `Location` for nginx `auth_request`, which
accepts nothing but 2xx, 401 and 403 (its `error_page 401` turns that into
the browser's 302).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, request

from ..addresses import peer_address
from ..errors import ApiError
from ..identity import AuthenticationFailed, Identity, current_identity
from ..web import services
from .rules import AccessRule
from .service import (
    ALLOW,
    LOGIN,
    STEP_UP,
    BadForwardedRequest,
    Decision,
    ForwardAuthService,
    Target,
    remote_headers,
)

log = logging.getLogger("authserver.forwardauth")

bp = Blueprint("forwardauth", __name__)

# Proxies forward the original method; every one of them gets the same check.
# Flask's automatic OPTIONS answer would let a preflight through unchecked.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/api/authz/forward-auth", methods=METHODS, provide_automatic_options=False)
def forward_auth():
    return check_request(redirect_status=302)


@bp.route("/api/authz/auth-request", methods=METHODS, provide_automatic_options=False)
def auth_request():
    return check_request(redirect_status=401)


def check_request(redirect_status: int) -> Response:
    svc = services().forward_auth
    try:
        verdict = assess(svc, peer_address(request.environ), request.headers, current_identity)
    except BadForwardedRequest as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    decision, identity, target = verdict.decision, verdict.identity, verdict.target

    if decision.verdict == ALLOW:
        return Response(status=200, headers=remote_headers(identity))
    if decision.verdict in (LOGIN, STEP_UP) and wants_redirect():
        return Response(status=redirect_status, headers={"Location": svc.login_url(target)})
    if decision.verdict == LOGIN:
        error, description = "unauthorized", decision.description
        if verdict.failure is not None:
            error, description = verdict.failure.error, verdict.failure.description
        raise ApiError(401, error, description, {"WWW-Authenticate": 'Bearer realm="authserver"'})
    log.info(
        "forward-auth refused",
        extra={"actor": identity.actor if identity else "anonymous", "host": target.host if target else None,
               "policy": verdict.rule.policy},
    )
    raise ApiError(403, "forbidden", decision.description)


@dataclass(frozen=True)
class Verdict:
    target: Target | None
    rule: AccessRule
    decision: Decision
    identity: Identity | None = None
    failure: AuthenticationFailed | None = None


def assess(svc: ForwardAuthService, peer: str, headers, resolve: Callable[[], Identity | None]) -> Verdict:
    """The decision for one forward-auth request: its target, the rule, who is asking.

    `resolve` answers the caller's identity (raising AuthenticationFailed); it is only
    asked when the rule depends on it. Raises BadForwardedRequest for unusable headers.
    """
    target = svc.target(peer, headers)
    rule = svc.rule_for(target)
    identity, failure = None, None
    if rule.policy not in ("bypass", "deny"):
        try:
            identity = resolve()
        except AuthenticationFailed as exc:
            failure = exc
    return Verdict(target, rule, svc.decide(rule, identity), identity, failure)


def wants_redirect() -> bool:
    """The proxy asked for redirects (`?rd`), or redirects are configured for browsers."""
    if "rd" in request.args:
        return True
    if services().settings.forward_auth_redirect != "browsers":
        return False
    return "text/html" in request.headers.get("Accept", "")
