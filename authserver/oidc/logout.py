"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): logout tokens posted to the clients."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import requests

from ..clock import Clock
from .clients import BACKCHANNEL_EVENT, LOGOUT_TOKEN_SECONDS, ClientRegistry, RegisteredClient
from .signing import SigningKeyService
from .tokens import TokenStore

log = logging.getLogger("authserver.oidc")



class LogoutDelivery(Protocol):
    def __call__(self, uri: str, logout_token: str) -> bool: ...


def post_logout_token(uri: str, logout_token: str, *, attempts: int = 3, timeout: float = 3.0,
                      pause: Callable[[float], None] | None = None) -> bool:
    """POST a logout token; retry a few times on network errors and 5xx, never longer than needed."""
    pause = pause or time.sleep
    for attempt in range(attempts):
        try:
            response = requests.post(uri, data={"logout_token": logout_token}, timeout=timeout,
                                     headers={"Cache-Control": "no-store"}, allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("back-channel logout delivery failed", extra={"uri": uri, "error": type(exc).__name__})
        else:
            if response.status_code < 300:
                return True
            if response.status_code < 500:
                log.warning("back-channel logout refused", extra={"uri": uri, "status": response.status_code})
                return False
        if attempt + 1 < attempts:
            pause(0.5 * 2**attempt)
    return False


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
