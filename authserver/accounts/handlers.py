"""GET /api/me, written once: the Flask route and the dispatch before Flask both call `me`."""

from __future__ import annotations

from werkzeug.wrappers import Request

from ..errors import Answer, ApiError, error_answer, json_answer
from ..identity import BEARER_CHALLENGE, AuthenticationFailed
from ..web import services

CHALLENGE = {"WWW-Authenticate": BEARER_CHALLENGE}


def me(req: Request) -> Answer:
    """Who the caller is, for any credential: a session cookie, a bearer token, an API key."""
    try:
        identity = services().identity.resolve(req)
    except AuthenticationFailed as exc:
        return error_answer(ApiError(401, exc.error, exc.description, {"WWW-Authenticate": exc.challenge}))
    if identity is None:
        return error_answer(ApiError(401, "unauthorized", "Log in, or send an API key or a bearer access token.",
                                     CHALLENGE))
    return json_answer(200, identity.as_json())
