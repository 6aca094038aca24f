"""Forward-auth, written once: the Flask routes and the dispatch before Flask both call `check`.

`/api/authz/forward-auth` (Traefik, Caddy) and `/api/authz/auth-request` (nginx) answer
the same question the same way; they differ only in how a redirect to the login page is
expressed: a 302 for proxies that pass the answer through, a 401 carrying `Location` for
nginx `auth_request`, which accepts nothing but 2xx, 401 and 403 (its `error_page 401`
turns that into the browser's 302).
"""

from __future__ import annotations

import logging

from werkzeug.wrappers import Request

from ..addresses import peer_address
from ..errors import Answer, ApiError, error_answer
from ..identity import BEARER_CHALLENGE, Resource
from ..web import services
from .service import ALLOW, LOGIN, STEP_UP, remote_headers

log = logging.getLogger("authserver.forwardauth")

# Proxies forward the original method; every one of them gets the same check.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REDIRECT_STATUS = {"/api/authz/forward-auth": 302, "/api/authz/auth-request": 401}
EMPTY = ("Content-Type", "text/html; charset=utf-8")
CHALLENGE = {"WWW-Authenticate": BEARER_CHALLENGE}


def check(req: Request) -> Answer:
    svc = services()
    forward_auth = svc.forward_auth
    verdict = forward_auth.assess(peer_address(req.environ), req.headers,
                                  lambda target: svc.identity.resolve(req, original_request(req, target)))
    decision, identity, target = verdict.decision, verdict.identity, verdict.target
    if decision.verdict == ALLOW:
        return Answer(200, [EMPTY, *remote_headers(identity).items()], b"")
    if decision.verdict in (LOGIN, STEP_UP) and wants_redirect(req, svc.settings.forward_auth_redirect):
        return Answer(REDIRECT_STATUS[req.path], [EMPTY, ("Location", forward_auth.login_url(target))], b"")
    if decision.verdict == LOGIN:
        failure = verdict.failure
        if failure is not None:
            retry = failure.retry_after
            headers = {"WWW-Authenticate": failure.challenge}
            if retry:
                headers["Retry-After"] = str(retry)
            return error_answer(ApiError(401, failure.error, failure.description, headers))
        return error_answer(ApiError(401, "unauthorized", decision.description, CHALLENGE))
    log.info(
        "forward-auth refused",
        extra={"actor": identity.actor if identity else "anonymous", "host": target.host if target else None,
               "policy": verdict.rule.policy},
    )
    return error_answer(ApiError(403, "forbidden", decision.description))


def original_request(req: Request, target) -> Resource | None:
    """The request the proxy asks about, as a DPoP proof for it names it: the method the proxy
    forwarded (X-Forwarded-Method) and the original URL without its query."""
    if target is None:
        return None
    url = target.url.split("?", 1)[0].split("#", 1)[0]
    method = req.headers.get("X-Forwarded-Method")
    return Resource(method if method in METHODS else None, url)


def wants_redirect(req: Request, setting: str) -> bool:
    """The proxy asked for redirects (`?rd`), or redirects are configured for browsers."""
    if "rd" in req.args:
        return True
    if setting != "browsers":
        return False
    return "text/html" in req.headers.get("Accept", "")
