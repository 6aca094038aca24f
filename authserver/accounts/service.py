"""Users, passwords and SSO sessions."""

from __future__ import annotations

import functools
import re
import secrets
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import flag_modified

from ..audit.service import AuditLog
from ..clock import Clock
from ..cookies import SESSION_COOKIE
from ..crypto import PasswordHasher, random_token, token_hash
from ..errors import DomainError
from ..extensions import db
from ..hotpath import read_one, write_one
from ..identity import Identity, Via, profile_columns, profile_from
from .models import SsoSession, User

# Touching last_seen_at on every request would turn every read into a write.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
# Built once: every authenticated request runs it. One read of the session's columns a
# check needs and its user's profile (prefixed `user__`), no ORM (docs/benchmarks.md).
_SESSIONS = SsoSession.__table__
_USERS = User.__table__
_USER = "user__"
SESSION_BY_TOKEN = (
    select(
        *(_SESSIONS.c[name] for name in ("id", "auth_method", "scopes", "amr", "key_id", "revoked_at",
                                         "expires_at", "last_seen_at")),
        *profile_columns(_USERS, _USER),
    )
    .join_from(_SESSIONS, _USERS, _USERS.c.id == _SESSIONS.c.user_id)
    .where(_SESSIONS.c.token_hash == bindparam("token_hash"))
)

_TOUCH_SESSION = update(_SESSIONS).where(_SESSIONS.c.id == bindparam("session_id")).values(
    last_seen_at=bindparam("now", type_=_SESSIONS.c.last_seen_at.type))


class AccountError(DomainError):
    """Base for account failures; the message is safe to show, `field` names the input it is about."""


class UsernameTaken(AccountError):
    status = 409
    error = "username_taken"

    def __init__(self, description: str):
        super().__init__(description, field="username")


class InvalidUserInput(AccountError):
    pass


class InvalidCredentials(AccountError):
    """Unknown user, wrong password or disabled account: deliberately indistinguishable."""

    status = 401
    error = "invalid_credentials"


def normalise_username(username: str) -> str:
    return username.strip().casefold()


def validate_username(username: str) -> str:
    username = username.strip()
    if not 1 <= len(username) <= 150:
        raise InvalidUserInput("A username has 1 to 150 characters.", field="username")
    if any(c.isspace() or not c.isprintable() for c in username) or ":" in username:
        raise InvalidUserInput("A username may not contain spaces, colons or control characters.", field="username")
    if username.lower().startswith("pkid-"):
        raise InvalidUserInput('A username may not start with "pkid-" (that prefix is for API keys).', field="username")
    return username


GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
MAX_GROUPS = 50


def validate_groups(names: Sequence[str]) -> list[str]:
    """Group names as tokens and headers carry them (`Remote-Groups: a,b`): letters, digits and
    . _ : @ - , up to 64 characters each, at most 50; duplicates dropped. Every way in (the admin
    console, the command line) goes through here."""
    groups: list[str] = []
    for name in names:
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            shown = str(name)[:64] if str(name).isprintable() else "(a name with control characters)"
            raise InvalidUserInput(
                f'"{shown}" is not a group name: letters, digits and . _ : @ - only, up to 64 characters.',
                field="groups",
            )
        if name not in groups:
            groups.append(name)
    if len(groups) > MAX_GROUPS:
        raise InvalidUserInput(f"A user belongs to at most {MAX_GROUPS} groups.", field="groups")
    return groups


def validate_profile(name: str, email: str) -> None:
    """A display name and an email address as pages, tokens and `Remote-*` headers show them:
    printable, within their lengths."""
    if len(name) > 200 or not name.isprintable():
        raise InvalidUserInput("A name has at most 200 characters and no control characters.", field="name")
    if len(email) > 320 or (email and ("@" not in email or any(c.isspace() or not c.isprintable() for c in email))):
        raise InvalidUserInput("The email address is not valid.", field="email")


# OpenID Connect Core 5.1's profile claims kept beside `name` (the user's or an admin's to fill in).
PROFILE_CLAIMS = ("given_name", "family_name", "nickname", "picture", "website", "locale", "zoneinfo")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,4}")  # BCP 47, e.g. fr, en-GB, zh-Hant-TW


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_profile_claims(values: Mapping[str, str | None]) -> dict[str, str]:
    """The standard claims as they will be released (empty ones left out); InvalidUserInput naming
    the field otherwise. URLs are absolute http(s) without credentials (a `javascript:` picture
    never reaches a relying party's page); names are printable; the locale is a BCP 47 tag; the
    zone an IANA time zone name."""
    unknown = set(values) - set(PROFILE_CLAIMS)
    if unknown:
        raise InvalidUserInput(f"Unknown profile claim {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    claims: dict[str, str] = {}
    for name in PROFILE_CLAIMS:
        value = (values.get(name) or "").strip()
        if not value:
            continue
        if name in ("given_name", "family_name", "nickname"):
            if len(value) > 200 or not value.isprintable():
                raise InvalidUserInput("At most 200 characters, and no control characters.", field=name)
        elif name in ("picture", "website"):
            parts = urlsplit(value)
            if (len(value) > 2000 or not value.isascii() or not value.isprintable() or " " in value
                    or parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc):
                raise InvalidUserInput("Enter an address starting with https:// (or http://).", field=name)
        elif name == "locale":
            value = value.replace("_", "-")
            if not _LOCALE.fullmatch(value):
                raise InvalidUserInput("Enter a language tag such as en, fr-CA or pt-BR.", field=name)
        elif value not in _time_zones():  # zoneinfo
            raise InvalidUserInput("Enter a time zone name such as Europe/Paris or America/New_York.", field=name)
        claims[name] = value
    return claims


class AccountService:
    def __init__(self, passwords: PasswordHasher, audit: AuditLog, clock: Clock):
        self.passwords = passwords
        self.audit = audit
        self.clock = clock
        self._password_listeners: list[Callable[[User], object]] = []
        self._email_listeners: list[Callable[[User, str, bool], object]] = []

    def on_email_change(self, listener: Callable[[User, str, bool], object]) -> None:
        """Call `listener(user, old_address, old_was_verified)` after a user's email address changed
        (committed)."""
        self._email_listeners.append(listener)

    def email_changed(self, user: User, old_email: str, old_verified: bool) -> None:
        for listener in self._email_listeners:
            listener(user, old_email, old_verified)

    def on_password_change(self, listener: Callable[[User], object]) -> None:
        """Call `listener(user)` after a user's password was changed or reset (committed)."""
        self._password_listeners.append(listener)

    def password_changed(self, user: User) -> None:
        for listener in self._password_listeners:
            listener(user)

    def create_user(
        self,
        username: str,
        *,
        email: str = "",
        name: str = "",
        password: str | None = None,
        is_admin: bool = False,
        groups: Sequence[str] = (),
        actor: str = "system",
    ) -> User:
        username = validate_username(username)
        if password is not None and not 8 <= len(password) <= 1024:
            raise InvalidUserInput("A password has 8 to 1024 characters.", field="password")
        validate_profile(name, email)
        groups = validate_groups(groups)
        self.check_email_free(email, None)
        now = self.clock.now()
        user = User(
            sub=secrets.token_hex(16),
            username=username,
            username_key=normalise_username(username),
            email=email,
            email_verified=False,
            name=name or username,
            groups=groups,
            attributes={},
            is_admin=is_admin,
            is_disabled=False,
            password_hash=self.passwords.hash(password) if password else None,
            created_at=now,
            updated_at=now,
        )
        db.session.add(user)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise UsernameTaken(f'The username "{username}" is taken.') from None
        self.audit.record("user.create", actor=actor, target=f"user:{username}", details={"admin": is_admin})
        db.session.commit()
        return user

    def check_email_free(self, email: str, user_id: int | None) -> None:
        """One address, one account: apps behind forward-auth or OIDC that match users by email
        must not be able to mistake one user for another (case does not make it another address)."""
        if not email:
            return
        taken = select(User.id).where(func.lower(User.email) == email.lower()).limit(1)
        if user_id is not None:
            taken = taken.where(User.id != user_id)
        if db.session.scalar(taken) is not None:
            raise InvalidUserInput("This email address belongs to another account.", field="email")

    def find(self, username: str) -> User | None:
        return db.session.scalar(select(User).where(User.username_key == normalise_username(username)))

    def get(self, user_id: int) -> User | None:
        return db.session.get(User, user_id)

    def check_password(self, username: str, password: str) -> User:
        """The user whose password this is, or InvalidCredentials.

        An unknown user is checked against a dummy hash so that both failures
        take the same path and the same time.
        """
        user = self.find(username) if username else None
        ok = self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None or user.is_disabled:
            raise InvalidCredentials("The username or password is not correct.")
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
            user.updated_at = self.clock.now()
            db.session.commit()
        return user

    def set_password(self, user: User, password: str, *, actor: str) -> None:
        if not 8 <= len(password) <= 1024:
            raise InvalidUserInput("A password has 8 to 1024 characters.", field="password")
        user.password_hash = self.passwords.hash(password)
        user.updated_at = self.clock.now()
        self.audit.record("user.password_set", actor=actor, target=f"user:{user.username}")
        db.session.commit()
        self.password_changed(user)

    def update_profile(self, user: User, *, name: str, email: str, actor: str,
                       claims: Mapping[str, str | None] | None = None) -> list[str]:
        """The user's own name, email and (when given) standard profile claims; a new email is
        unverified. Answers the fields that changed; `updated_at` moves with any change."""
        name, email = name.strip(), email.strip()
        validate_profile(name, email)
        profile = validate_profile_claims(claims) if claims is not None else dict(user.profile or {})
        if email.casefold() != (user.email or "").casefold():
            self.check_email_free(email, user.id)
        wanted = {"name": name or user.username, "email": email}
        for claim in PROFILE_CLAIMS:
            if profile.get(claim) != (user.profile or {}).get(claim):
                wanted["profile"] = profile
                break
        changed = [field for field, value in wanted.items() if getattr(user, field) != value]
        if not changed:
            return []
        old_email, old_verified = user.email or "", bool(user.email_verified)
        for field in changed:
            setattr(user, field, wanted[field])
        if "email" in changed:
            # Written whatever this session last read: a verification committed meanwhile (for the
            # old address) must not survive the change (a lost update made it the new one's).
            user.email_verified = False
            flag_modified(user, "email_verified")
        user.updated_at = self.clock.now()
        self.audit.record("user.profile_update", actor=actor, target=f"user:{user.username}",
                          details={"fields": changed})
        db.session.commit()
        if "email" in changed:
            self.email_changed(user, old_email, old_verified)
        return changed


@dataclass(frozen=True)
class OpenedSession:
    record: SsoSession
    cookie_value: str  # handed to the browser once; only its hash is stored


class SessionService:
    """Server-side SSO sessions with idle and absolute timeouts."""

    def __init__(self, clock: Clock, idle_seconds: int, absolute_seconds: int):
        self.clock = clock
        self.idle = timedelta(seconds=idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)
        self._end_listeners: list[Callable[[list[SsoSession]], object]] = []
        self._replace_listeners: list[Callable[[SsoSession, SsoSession], object]] = []

    def on_replace(self, listener: Callable[[SsoSession, SsoSession], object]) -> None:
        """Call `listener(old, new)` when a login replaces a session of the same user (before the old one ends)."""
        self._replace_listeners.append(listener)

    def replace(self, old: SsoSession, new: SsoSession) -> None:
        """A login in a browser that had a session: the old one ends. For the same user, what
        was bound to it (apps' tokens) moves to the new one; for another user it ends with it."""
        if old.id == new.id:
            return
        if old.user_id != new.user_id or new.key_id is not None:
            self.revoke(old)
            return
        for listener in self._replace_listeners:
            listener(old, new)
        db.session.execute(
            update(SsoSession)
            .where(SsoSession.id == old.id, SsoSession.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        db.session.commit()

    def on_end(self, listener: Callable[[list[SsoSession]], object]) -> None:
        """Call `listener(sessions)` after sessions are revoked (e.g. back-channel logout)."""
        self._end_listeners.append(listener)

    def _ended(self, records: list[SsoSession]) -> None:
        if records:
            for listener in self._end_listeners:
                listener(records)

    def open(
        self,
        user: User,
        *,
        auth_method: str,
        amr: Sequence[str],
        acr: str = "",
        ip: str = "",
        user_agent: str = "",
        key_id: str | None = None,
        scopes: Sequence[str] | None = None,
        auth_time: datetime | None = None,
    ) -> OpenedSession:
        now = self.clock.now()
        cookie_value = random_token(32)
        record = SsoSession(
            id=secrets.token_urlsafe(24),
            token_hash=token_hash(cookie_value),
            user_id=user.id,
            auth_method=auth_method,
            amr=list(amr),
            acr=acr,
            key_id=key_id,
            scopes=list(scopes) if scopes is not None else None,
            auth_time=auth_time or now,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
        db.session.add(record)
        db.session.commit()
        return OpenedSession(record, cookie_value)

    def resolve(self, cookie_value: str):
        """The live session behind a cookie, or None (expired, idle, revoked, unknown).

        The row as read: the session's columns, then its user's prefixed `user__`
        (`identity_from_row` makes the caller's identity of it without the ORM).
        """
        if not cookie_value or len(cookie_value) > 128:
            return None
        row = read_one(SESSION_BY_TOKEN, {"token_hash": token_hash(cookie_value)})
        if row is None or not self._live(row, row.user__is_disabled):
            return None
        now = self.clock.now()
        if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
            write_one(_TOUCH_SESSION, {"session_id": row.id, "now": now})
        return row

    def is_live(self, record: SsoSession) -> bool:
        return self._live(record, record.user.is_disabled)

    def _live(self, record, user_disabled: bool) -> bool:
        now = self.clock.now()
        return (
            record.revoked_at is None
            and now < record.expires_at
            and now - record.last_seen_at < self.idle
            and not user_disabled
        )

    def find(self, session_id: str) -> SsoSession | None:
        """A live session by its public id (`sid`)."""
        record = db.session.get(SsoSession, session_id) if session_id and len(session_id) <= 64 else None
        return record if record is not None and self.is_live(record) else None

    def keep_alive(self, session_id: str) -> bool:
        """Is the session live? Then it was just used (an app refreshed a token under it): note
        the time, in the caller's open transaction, so it does not go idle while the app works."""
        record = self.find(session_id)
        if record is None:
            return False
        now = self.clock.now()
        if now - record.last_seen_at >= LAST_SEEN_RESOLUTION:
            db.session.execute(_TOUCH_SESSION, {"session_id": record.id, "now": now})
        return True

    def revoke(self, record: SsoSession) -> None:
        result = db.session.execute(
            update(SsoSession)
            .where(SsoSession.id == record.id, SsoSession.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        db.session.commit()
        if result.rowcount:
            self._ended([record])

    def revoke_all(self, user: User, *, except_id: str | None = None) -> int:
        live = select(SsoSession).where(SsoSession.user_id == user.id, SsoSession.revoked_at.is_(None))
        if except_id:
            live = live.where(SsoSession.id != except_id)
        records = list(db.session.scalars(live))
        if not records:
            return 0
        result = db.session.execute(
            update(SsoSession)
            .where(SsoSession.id.in_([r.id for r in records]), SsoSession.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        db.session.commit()
        self._ended(records)
        return result.rowcount

    def revoke_everyone(self) -> int:
        """End every live SSO session of every user (after a restore from a backup)."""
        result = db.session.execute(
            update(SsoSession).where(SsoSession.revoked_at.is_(None)).values(revoked_at=self.clock.now())
        )
        db.session.commit()
        return result.rowcount

    def active_for(self, user: User) -> list[SsoSession]:
        rows = db.session.scalars(
            select(SsoSession).where(SsoSession.user_id == user.id, SsoSession.revoked_at.is_(None))
        )
        return [r for r in rows if self.is_live(r)]

    def find_own(self, user: User, session_id: str) -> SsoSession | None:
        """One of `user`'s live sessions by its public id; None for anyone else's."""
        if not session_id or len(session_id) > 64:
            return None
        record = db.session.get(SsoSession, session_id)
        if record is None or record.user_id != user.id or not self.is_live(record):
            return None
        return record


class SessionCookieStrategy:
    """The SSO cookie, for browsers and first-party apps."""

    name = "session"

    def __init__(self, sessions: SessionService, cookie_name: str = SESSION_COOKIE):
        self.sessions = sessions
        self.cookie_name = cookie_name

    def authenticate(self, req, resource=None) -> Identity | None:
        cookie = req.cookies.get(self.cookie_name)
        if not cookie:
            return None
        row = self.sessions.resolve(cookie)
        if row is None:
            return None  # a stale cookie is not an error: the caller is simply logged out
        return identity_from_row(row)


def identity_from_row(row) -> Identity:
    """The identity of a session read by `SessionService.resolve`; ORM objects only when a view asks."""
    profile = profile_from(row, _USER)
    return Identity(
        profile=profile,
        load_user=lambda: db.session.get(User, profile.id),
        load_session=lambda: db.session.get(SsoSession, row.id),
        auth_method=row.auth_method,
        via=Via.SESSION,
        scopes=frozenset(row.scopes) if row.scopes is not None else None,
        amr=tuple(row.amr or ()),
        key_id=row.key_id,
        extra={"session_id": row.id},
    )


def identity_from_session(record: SsoSession) -> Identity:
    return Identity(
        user=record.user,
        auth_method=record.auth_method,
        via=Via.SESSION,
        scopes=frozenset(record.scopes) if record.scopes is not None else None,
        amr=tuple(record.amr or ()),
        session=record,
        key_id=record.key_id,
    )
