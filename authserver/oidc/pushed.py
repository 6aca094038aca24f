"""Pushed authorization requests (RFC 9126): a client sends its authorization request to
/oauth/par over the back channel, authenticated, and sends the browser to /oauth/authorize
with the `request_uri` it got back instead of the parameters.

A request_uri must be opened within PUSHED_SECONDS, and the browser that opens it is the
only one that can follow it further (a cookie of its own): through the login and consent
pages, FOLLOW_SECONDS at most. It is used once, by the authorization response it ends in (a
code, or an error sent back to the client). A link passed on after it was opened, by whoever
opened it, leads nowhere."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from ..clock import Clock
from ..crypto import random_token, token_hash
from ..extensions import db
from .models import PushedRequest

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PUSHED_SECONDS = 60
FOLLOW_SECONDS = 1800
# Parameters that authenticate the client at the push: never stored.
CLIENT_AUTH_PARAMS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


class PushedRequestError(Exception):
    """A request_uri that does not open: unknown, expired, used, or another client's."""


@dataclass(frozen=True)
class Opened:
    uri: str
    client_id: str
    params: list[tuple[str, str]]
    opener: str | None = None  # a new browser value to set as the cookie, when this opening made one


class PushedRequests:
    def __init__(self, clock: Clock):
        self.clock = clock

    def push(self, client_id: str, params: list[tuple[str, str]]) -> str:
        """Store a validated request; its request_uri (256 random bits, kept as SHA-256)."""
        now = self.clock.now()
        db.session.execute(delete(PushedRequest).where(PushedRequest.expires_at < now - timedelta(hours=1)))
        uri = REQUEST_URI_PREFIX + random_token(32)
        db.session.add(PushedRequest(
            uri_hash=token_hash(uri), client_id=client_id, params=[list(p) for p in params],
            created_at=now, expires_at=now + timedelta(seconds=PUSHED_SECONDS),
        ))
        db.session.commit()
        return uri

    def open(self, uri: str, client_id: str | None, opener: str | None) -> Opened:
        """The pushed parameters behind `uri` for `client_id`, in the browser whose cookie value is
        `opener`. The first opening (within PUSHED_SECONDS) binds the request to that browser,
        giving it a value when it has none; later ones must come from the same browser."""
        if not uri.startswith(REQUEST_URI_PREFIX) or len(uri) > 200:
            raise PushedRequestError("The request_uri is not one this server issued at its pushed authorization "
                                     "request endpoint.")
        row = db.session.scalar(select(PushedRequest).where(PushedRequest.uri_hash == token_hash(uri)))
        if row is None:
            raise PushedRequestError("The request_uri is unknown: push the authorization request again.")
        if client_id != row.client_id:
            raise PushedRequestError("The request_uri was pushed by another client than the client_id names.")
        now = self.clock.now()
        if row.used_at is not None:
            raise PushedRequestError("The request_uri was used already: push the authorization request again "
                                     "for every sign-in.")
        given = opener if isinstance(opener, str) and 20 <= len(opener) <= 100 else None
        params = [(name, value) for name, value in row.params]
        if row.opened_at is None:
            if now >= row.expires_at:
                raise PushedRequestError(f"The request_uri expired ({PUSHED_SECONDS} s after the push): push the "
                                         "authorization request again just before sending the browser.")
            fresh = None
            if given is None:
                given = fresh = random_token(32)
            claimed = db.session.execute(
                update(PushedRequest).where(PushedRequest.id == row.id, PushedRequest.opened_at.is_(None))
                .values(opened_at=now, opener_hash=token_hash(given))
            ).rowcount
            db.session.commit()
            if claimed == 1:
                return Opened(uri, row.client_id, params, fresh)
            db.session.refresh(row)  # another browser opened it a moment before
        if now >= row.opened_at + timedelta(seconds=FOLLOW_SECONDS):
            raise PushedRequestError("The sign-in that began with this request_uri took too long: start again "
                                     "from the app.")
        if given is None or not hmac.compare_digest(row.opener_hash or "", token_hash(given)):
            raise PushedRequestError("This sign-in was started in another browser: start it again from the app "
                                     "on this device.")
        return Opened(uri, row.client_id, params)

    def use(self, uri: str) -> bool:
        """Mark the request used in the caller's transaction; False when another answer used it first."""
        done = db.session.execute(
            update(PushedRequest)
            .where(PushedRequest.uri_hash == token_hash(uri), PushedRequest.used_at.is_(None))
            .values(used_at=self.clock.now())
        )
        return done.rowcount == 1
