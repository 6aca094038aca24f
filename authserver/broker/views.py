"""The broker's two JSON endpoints: start a login transaction, complete it from the callback."""

from __future__ import annotations

from flask import Blueprint, request

from .. import jsonapi
from ..errors import ApiError
from ..web import client_ip, services
from .service import Callback

bp = Blueprint("broker", __name__)


@bp.post("/api/oauth/authorize")
def authorize():
    body = jsonapi.json_object()
    started = services().broker.start(
        client_id=jsonapi.string(body, "client_id", max_length=64),
        redirect_uri=jsonapi.string(body, "redirect_uri", max_length=2000),
        scope=jsonapi.string(body, "scope", required=False, max_length=1000),
        state=jsonapi.string(body, "state", required=False, max_length=512),
        code_challenge=jsonapi.string(body, "code_challenge", required=False, max_length=128),
        code_challenge_method=jsonapi.string(body, "code_challenge_method", required=False, max_length=10),
        address=client_ip(),
    )
    return {
        "authorization_url": started.authorization_url,
        "transaction": started.handle,
        "state": started.state,
        "expires_in": started.expires_in,
    }


@bp.post("/api/oauth/callback")
def callback():
    body = jsonapi.json_object()
    handle = jsonapi.string(body, "transaction", required=False, max_length=256)
    url = jsonapi.string(body, "url", required=False, max_length=8192)
    verifier = jsonapi.string(body, "code_verifier", required=False, max_length=128)
    if url is not None:
        if body.get("code") is not None or body.get("state") is not None:
            raise ApiError(400, "invalid_request",
                           "Send either the callback url or its code and state, not both; the url alone is enough.")
        received = Callback.from_url(handle, url, verifier)
    else:
        received = Callback(
            handle=handle,
            code=jsonapi.string(body, "code", required=False, max_length=256) or None,
            state=jsonapi.string(body, "state", required=False, max_length=512) or None,
            code_verifier=verifier,
            iss=jsonapi.string(body, "iss", required=False, max_length=2000),
            error=jsonapi.string(body, "error", required=False, max_length=64),
            error_description=jsonapi.string(body, "error_description", required=False, max_length=1000),
        )
    result = services().broker.complete(received, address=client_ip(), app_version=app_version())
    token = result.token
    answer = {
        "access_token": token["access_token"],
        "id_token": token["id_token"],
        "expires_in": token.get("expires_in"),
        "token_type": token.get("token_type", "Bearer"),
        "scope": token.get("scope", ""),
        "user": result.user,
    }
    if token.get("refresh_token"):
        answer["refresh_token"] = token["refresh_token"]
    return answer


def app_version() -> str:
    """The app's own version header, else its User-Agent: old app versions are told apart by it."""
    value = request.headers.get("X-App-Version") or request.headers.get("User-Agent") or ""
    return "".join(c for c in value if c.isprintable())[:200]
