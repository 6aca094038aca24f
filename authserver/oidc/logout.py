"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): logout tokens posted to the clients."""

from __future__ import annotations

import http.client
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from ..clock import Clock
from .clients import BACKCHANNEL_EVENT, LOGOUT_TOKEN_SECONDS, ClientRegistry, RegisteredClient
from .signing import SigningKeyService
from .tokens import TokenStore

log = logging.getLogger("authserver.oidc")



class LogoutDelivery(Protocol):
    def __call__(self, uri: str, logout_token: str) -> bool: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is the client's answer, not an address to send the token to


# The standard library's client (http and https only, see below), without redirects.
_OPENER = urllib.request.build_opener(_NoRedirects)


def post_logout_token(uri: str, logout_token: str, *, attempts: int = 3, timeout: float = 3.0,
                      pause: Callable[[float], None] | None = None) -> bool:
    """POST a logout token; retry a few times on network errors and 5xx, never longer than needed."""
    if urlsplit(uri).scheme not in ("http", "https"):
        log.warning("back-channel logout address is not http(s)", extra={"uri": uri})
        return False
    pause = pause or time.sleep
    body = urlencode({"logout_token": logout_token}).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"}
    for attempt in range(attempts):
        status = _post(urllib.request.Request(uri, data=body, headers=headers, method="POST"), timeout)
        if status is not None:
            if status < 300:
                return True
            if status < 500:
                log.warning("back-channel logout refused", extra={"uri": uri, "status": status})
                return False
        if attempt + 1 < attempts:
            pause(0.5 * 2**attempt)
    return False


def _post(request: urllib.request.Request, timeout: float) -> int | None:
    """The answer's status, or None when none came (refused, unreachable, timed out)."""
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:  # an answer all the same: 3xx, 4xx, 5xx
        exc.close()
        return exc.code
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        log.warning("back-channel logout delivery failed",
                    extra={"uri": request.full_url, "error": type(exc).__name__})
        return None


class BackchannelLogout:
    """Tells clients that an SSO session ended, from a background thread pool.

    The logout tokens are signed in the request (they need the database);
    only the HTTP delivery runs in the background, so the logout page never
    waits on a slow or dead client.
    """

    def __init__(self, issuer: str, clock: Clock, signing: SigningKeyService, tokens: TokenStore,
                 clients: ClientRegistry, deliver: LogoutDelivery = post_logout_token, max_workers: int = 4):
        self.issuer = issuer
        self.clock = clock
        self.signing = signing
        self.tokens = tokens
        self.clients = clients
        self.deliver = deliver
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="backchannel-logout")

    def logout_token(self, client: RegisteredClient, user, sid: str) -> str:
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_SECONDS,
            "jti": secrets.token_urlsafe(16),
            "sub": user.sub,
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return self.signing.sign(claims, client.id_token_signed_response_alg, typ="logout+jwt")

    def sessions_ended(self, sessions: Sequence) -> list:
        """Queue a logout token for every client with tokens under these sessions.

        A failure here is logged and swallowed: the user's logout has already happened.
        """
        try:
            return self._queue(sessions)
        except Exception:
            log.exception("could not queue back-channel logout")
            return []

    def access_withdrawn(self, user, client_id: str) -> list:
        """The user took this client's access away (consent revoked): the client is told that
        every session it signed the user in under has ended for it, as at a logout."""
        try:
            client = self.clients.get(client_id)
            if client is None or not client.row.backchannel_logout_uri:
                return []
            return [
                self._executor.submit(self.deliver, client.row.backchannel_logout_uri,
                                      self.logout_token(client, user, sid))
                for sid in sorted(self.tokens.sessions_of(user.id, client_id))
            ]
        except Exception:
            log.exception("could not queue back-channel logout")
            return []

    def _queue(self, sessions: Sequence) -> list:
        by_sid = self.tokens.clients_of_sessions([s.id for s in sessions])
        futures = []
        for session in sessions:
            for client_id in sorted(by_sid.get(session.id, ())):
                client = self.clients.get(client_id)
                if client is None or not client.row.backchannel_logout_uri:
                    continue
                token = self.logout_token(client, session.user, session.id)
                futures.append(self._executor.submit(self.deliver, client.row.backchannel_logout_uri, token))
        return futures
