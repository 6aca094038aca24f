"""The device authorization grant (RFC 8628): photo frames, TV apps and command-line uploaders
that have no browser or no keyboard.

The device asks for a pair of codes (`start`), shows the user code, and polls the token
endpoint with the device code (`poll`) while the user enters the user code at /device,
signed in on a phone or computer, and allows or denies (`decide`).

- Device codes have 256 bits of entropy and are stored as SHA-256. User codes are 8
  characters of RFC 8628 §6.1's consonant alphabet (34.6 bits), shown `XXXX-XXXX`, typed in
  any case with or without the dash, stored as an HMAC under the pepper; guessing them at
  /device is throttled per session and per address.
- Polling faster than the interval answers `slow_down` and raises that device code's
  interval by 5 s; one conditional UPDATE decides, so parallel polls cannot both pass.
- An approved authorization is redeemed once: a conditional UPDATE marks it redeemed in
  the transaction that saves the tokens; a poll after that is `invalid_grant`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidGrantError
from authlib.oauth2.rfc8628 import AuthorizationPendingError, ExpiredTokenError, SlowDownError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import keyed_hash, random_token, token_hash
from ..extensions import db
from .models import DeviceAuthorization

log = logging.getLogger("authserver.oidc")

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alike digits
USER_CODE_LENGTH = 8
DEVICE_CODE_SECONDS = 600
POLL_INTERVAL = 5
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: the interval grows by 5 s at each slow_down
# Kept this long after expiry, so a late poll hears expired_token rather than invalid_grant.
KEEP_EXPIRED = timedelta(hours=1)


def new_user_code() -> str:
    """`XXXX-XXXX` from the consonant alphabet."""
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def normalise_user_code(text: object) -> str | None:
    """The 8 letters of a user code as a person typed it (any case, dashes and spaces anywhere),
    or None when it cannot be one (wrong length, a letter outside the alphabet)."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    letters = "".join(c for c in text.upper() if c not in "- ")
    if len(letters) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in letters):
        return None
    return letters


def shown(letters: str) -> str:
    return f"{letters[:4]}-{letters[4:]}"


@dataclass(frozen=True)
class Started:
    device_code: str
    user_code: str  # as shown, XXXX-XXXX
    expires_in: int
    interval: int


@dataclass(frozen=True)
class PendingDevice:
    """A request waiting for the user at /device (what the consent page shows)."""

    id: int
    client_id: str
    scope: str
    user_code: str  # as shown


class DeviceError(Exception):
    """The user code cannot be decided on; the message says why, for the /device page."""


class DeviceStore:
    def __init__(self, pepper: bytes, clock: Clock, audit: AuditLog):
        self.pepper = pepper
        self.clock = clock
        self.audit = audit

    def _user_code_hmac(self, letters: str) -> str:
        return keyed_hash(self.pepper, "device-user-code:" + letters)

    def start(self, client_id: str, scope: str) -> Started:
        now = self.clock.now()
        db.session.execute(delete(DeviceAuthorization).where(DeviceAuthorization.expires_at < now - KEEP_EXPIRED))
        device_code = random_token(32)
        for _ in range(5):  # a user code that is taken (one chance in billions) is drawn again
            user_code = new_user_code()
            db.session.add(DeviceAuthorization(
                device_code_hash=token_hash(device_code),
                user_code_hmac=self._user_code_hmac(normalise_user_code(user_code)),
                client_id=client_id,
                scope=scope,
                status="pending",
                created_at=now,
                expires_at=now + timedelta(seconds=DEVICE_CODE_SECONDS),
                poll_interval=POLL_INTERVAL,
                acr="",
                amr=[],
            ))
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                continue
            return Started(device_code, user_code, DEVICE_CODE_SECONDS, POLL_INTERVAL)
        raise RuntimeError("no free user code after five draws")

    # -- the user's side, at /device --------------------------------------------------

    def pending(self, user_code: str) -> PendingDevice | None:
        """The request waiting for this user code; None if there is none (wrong, decided, expired)."""
        letters = normalise_user_code(user_code)
        if letters is None:
            return None
        row = db.session.scalar(select(DeviceAuthorization).where(
            DeviceAuthorization.user_code_hmac == self._user_code_hmac(letters),
            DeviceAuthorization.status == "pending",
            DeviceAuthorization.expires_at > self.clock.now(),
        ))
        if row is None:
            return None
        return PendingDevice(row.id, row.client_id, row.scope, shown(letters))

    def decide(self, device: PendingDevice, user, session, *, allow: bool) -> None:
        """Record the user's answer; DeviceError if the request was decided meanwhile or expired.
        One conditional UPDATE: of two answers to one code, exactly one counts."""
        now = self.clock.now()
        result = db.session.execute(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.id == device.id, DeviceAuthorization.status == "pending",
                   DeviceAuthorization.expires_at > now)
            .values(status="approved" if allow else "denied", user_id=user.id, decided_at=now,
                    sid=session.id, auth_time=session.auth_time, acr=session.acr or "",
                    amr=list(session.amr or []))
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise DeviceError("This code was used already or has expired; start again on the device.")
        self.audit.record("oauth.device_approved" if allow else "oauth.device_denied",
                          actor=f"user:{user.username}", target=f"client:{device.client_id}",
                          details={"scope": device.scope})
        db.session.commit()

    def withdraw(self, user_id: int, client_id: str | None = None) -> int:
        """Approvals not yet redeemed, and pending requests this user was shown, of one client or all:
        withdrawn (a password change, the app's access removed, the account disabled); how many."""
        query = update(DeviceAuthorization).where(DeviceAuthorization.user_id == user_id,
                                                  DeviceAuthorization.status == "approved")
        if client_id is not None:
            query = query.where(DeviceAuthorization.client_id == client_id)
        return db.session.execute(query.values(status="withdrawn")).rowcount

    # -- the device's side, at the token endpoint -----------------------------------------

    def poll(self, device_code: str, client_id: str) -> DeviceAuthorization:
        """The approved authorization, marked redeemed in the still-open transaction (the tokens
        commit with it); otherwise the RFC 8628 error to answer. Of parallel polls after the
        approval, exactly one gets the authorization."""
        if not isinstance(device_code, str) or not 0 < len(device_code) <= 256:
            raise InvalidGrantError("The device_code is not valid.")
        hashed = token_hash(device_code)
        now = self.clock.now()
        db.session.commit()  # start on a fresh snapshot
        row = db.session.scalar(select(DeviceAuthorization).where(
            DeviceAuthorization.device_code_hash == hashed, DeviceAuthorization.client_id == client_id))
        if row is None:
            raise InvalidGrantError("The device_code is not known for this client: start again with a new "
                                    "device authorization request.")
        if row.status == "redeemed":
            raise InvalidGrantError("The device_code was exchanged for tokens already; each is used once.")
        if row.status == "withdrawn":
            raise InvalidGrantError("The approval was withdrawn (the user changed their password or removed the "
                                    "app's access): start again with a new device authorization request.")
        if row.expires_at <= now:
            raise ExpiredTokenError("The device_code has expired before the user approved it: start again.")
        if row.status == "denied":
            raise AccessDeniedError("The user denied the request.")
        if row.status == "approved":
            claimed = db.session.execute(
                update(DeviceAuthorization)
                .where(DeviceAuthorization.id == row.id, DeviceAuthorization.status == "approved")
                .values(status="redeemed", redeemed_at=now)
            )
            if claimed.rowcount == 1:
                db.session.refresh(row)
                return row
            db.session.rollback()
            raise InvalidGrantError("The device_code was exchanged for tokens already; each is used once.")
        # Pending: a poll sooner than the interval since the last one slows the device down.
        self._pace(row, now)
        raise AuthorizationPendingError("The user has not answered yet; poll again after the interval.")

    def _pace(self, row: DeviceAuthorization, now) -> None:
        table = DeviceAuthorization.__table__
        on_time = db.session.execute(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.id == row.id, DeviceAuthorization.status == "pending",
                   or_(DeviceAuthorization.last_polled_at.is_(None),
                       DeviceAuthorization.last_polled_at <= now - timedelta(seconds=row.poll_interval)))
            .values(last_polled_at=now)
        ).rowcount == 1
        if on_time:
            db.session.commit()
            return
        db.session.execute(
            update(DeviceAuthorization).where(DeviceAuthorization.id == row.id)
            .values(poll_interval=table.c.poll_interval + SLOW_DOWN_STEP, last_polled_at=now)
        )
        db.session.commit()
        raise SlowDownError(f"Polling too fast: wait {row.poll_interval + SLOW_DOWN_STEP} s between polls.")
