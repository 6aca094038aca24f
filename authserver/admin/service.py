"""What the admin console does to users and how it reads the audit log.

Every change is audited with the acting admin; an admin cannot lock themself
out (disable their own account or drop their own admin flag).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm.attributes import flag_modified

from keyvault.models import ApiKey

from ..accounts.models import SsoSession, User
from ..accounts.service import (
    AccountError,
    AccountService,
    SessionService,
    validate_groups,
    validate_profile,
    validate_profile_claims,
)
from ..audit.models import AuditEvent
from ..audit.service import AuditLog
from ..clock import Clock
from ..extensions import db
from ..mail.service import MailService
from ..oidc.models import OAuthClient, SigningKey
from ..oidc.signing import Rotated, SigningKeyService
from ..oidc.tokens import TokenStore
from ..passkeys.models import Passkey
from ..passkeys.service import PasskeyService
from ..totp.models import TotpCredential
from ..totp.service import TotpService

USERS_PER_PAGE = 50
EVENTS_PER_PAGE = 50


class AdminError(AccountError):
    """An admin action that cannot be done as asked; the message says why and is safe to show."""


def parse_groups(text: str) -> list[str]:
    """Groups typed as "photos, family admins": commas or spaces between names, duplicates dropped."""
    return validate_groups([name for name in re.split(r"[\s,]+", text or "") if name])


def generate_password() -> str:
    """A password handed out once by an admin: 120 bits from the OS CSPRNG, in groups easy to read out."""
    raw = secrets.token_urlsafe(15)
    return "-".join(raw[i:i + 5] for i in range(0, len(raw), 5))


@dataclass(frozen=True)
class UserRow:
    user: User
    totp_enabled: bool
    passkeys: int = 0


@dataclass(frozen=True)
class UserPage:
    rows: list[UserRow]
    total: int
    page: int
    pages: int


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""  # exact, or a prefix when it ends with "." ("key.")
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    # The id to continue from for the next (older) page; None on the last page.
    next_before: int | None


class AdminService:
    def __init__(self, accounts: AccountService, sessions: SessionService, totp: TotpService, audit: AuditLog,
                 clock: Clock, signing: SigningKeyService, tokens: TokenStore, mail: MailService,
                 passkeys: PasskeyService):
        self.accounts = accounts
        self.mail = mail
        self.tokens = tokens
        self.sessions = sessions
        self.totp = totp
        self.passkeys = passkeys
        self.audit = audit
        self.clock = clock
        self.signing = signing

    def counts(self) -> dict[str, int]:
        """The overview page's figures."""
        now = self.clock.now()

        def count(model, *where) -> int:
            return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0

        return {
            "users": count(User),
            "admins": count(User, User.is_admin.is_(True)),
            "disabled": count(User, User.is_disabled.is_(True)),
            "sessions": count(SsoSession, SsoSession.revoked_at.is_(None), SsoSession.expires_at > now),
            "clients": count(OAuthClient, OAuthClient.disabled_at.is_(None)),
            "keys": count(ApiKey, ApiKey.revoked_at.is_(None)),
        }

    # -- users ---------------------------------------------------------------

    def search_users(self, query: str = "", page: int = 1) -> UserPage:
        """Users whose username, name or email contains `query` (case-insensitive), by username."""
        stmt = select(User)
        query = query.strip()[:200]
        if query:
            # LIKE wildcards typed by the admin are matched literally.
            pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(or_(
                User.username_key.like(pattern, escape="\\"),
                func.lower(User.name).like(pattern, escape="\\"),
                func.lower(User.email).like(pattern, escape="\\"),
            ))
        total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pages = max(1, -(-total // USERS_PER_PAGE))
        page = min(max(page, 1), pages)
        users = list(db.session.scalars(
            stmt.order_by(User.username_key).offset((page - 1) * USERS_PER_PAGE).limit(USERS_PER_PAGE)
        ))
        enrolled = set(db.session.scalars(
            select(TotpCredential.user_id).where(
                TotpCredential.user_id.in_([u.id for u in users]), TotpCredential.totp_secret_sealed.is_not(None)
            )
        )) if users else set()
        passkeys = dict(db.session.execute(
            select(Passkey.user_id, func.count()).where(Passkey.user_id.in_([u.id for u in users]))
            .group_by(Passkey.user_id)
        ).all()) if users else {}
        return UserPage([UserRow(u, u.id in enrolled, passkeys.get(u.id, 0)) for u in users], total, page, pages)

    def get_user(self, user_id: int) -> User | None:
        return db.session.get(User, user_id)

    def create_user(self, *, actor: str, username: str, email: str, name: str, groups: Sequence[str],
                    is_admin: bool, password: str | None, invite: bool = False) -> tuple[User, str | None]:
        """The new user and, when no password was given, the generated one (to show once). With
        `invite`, no password at all: the user gets a link by email to choose one."""
        if invite:
            if password:
                raise AdminError("Either a password or an invitation: leave the password empty to invite.",
                                 field="password")
            if not self.mail.enabled:
                raise AdminError("This server does not send mail (AUTHSERVER_SMTP_URL is not set): set a password "
                                 "instead.", field="invite")
            if not email.strip():
                raise AdminError("An invitation goes by email: enter the user's email address.", field="email")
            user = self.accounts.create_user(username, email=email, name=name, password=None, is_admin=is_admin,
                                             groups=groups, actor=actor)
            self.mail.invite(user, actor=actor)
            return user, None
        generated = None if password else generate_password()
        user = self.accounts.create_user(username, email=email, name=name, password=password or generated,
                                         is_admin=is_admin, groups=groups, actor=actor)
        return user, generated

    def update_user(self, admin: User, user: User, *, name: str, email: str, groups: Sequence[str],
                    is_admin: bool, email_verified: bool | None = None,
                    claims: Mapping[str, str | None] | None = None) -> list[str]:
        """Change the profile, groups and admin flag, and mark the address verified or not (a new
        address is unverified unless the admin says otherwise); the names of the fields that changed."""
        if user.id == admin.id and not is_admin:
            raise AdminError("You cannot remove your own admin flag; ask another administrator.", field="is_admin")
        validate_profile(name, email)
        groups = validate_groups(groups)
        if email.casefold() != (user.email or "").casefold():
            self.accounts.check_email_free(email, user.id)
        wanted = {"name": name or user.username, "email": email, "groups": list(groups), "is_admin": is_admin}
        if claims is not None:
            profile = validate_profile_claims(claims)
            if profile != (user.profile or {}):
                wanted["profile"] = profile
        if email.casefold() != (user.email or "").casefold():
            # A new address is unverified, unless the admin ticks the box now (not a box left
            # ticked for the old address).
            verified = bool(email_verified) and not user.email_verified
        else:
            verified = bool(user.email_verified) if email_verified is None else bool(email_verified)
        wanted["email_verified"] = verified and bool(email)
        changed = [field for field, value in wanted.items() if getattr(user, field) != value]
        if not changed:
            return []
        old_email, old_verified = user.email or "", bool(user.email_verified)
        for field in changed:
            setattr(user, field, wanted[field])
        if "email" in changed:
            flag_modified(user, "email_verified")  # written whatever was committed meanwhile
        user.updated_at = self.clock.now()
        details: dict = {"fields": changed}
        if "is_admin" in changed:
            details["admin"] = is_admin
        if "groups" in changed:
            details["groups"] = list(groups)
        if "email_verified" in changed:
            details["email_verified"] = wanted["email_verified"]
        self.audit.record("user.update", actor=actor_of(admin), target=target_of(user), details=details)
        db.session.commit()
        if "email" in changed:
            self.accounts.email_changed(user, old_email, old_verified)
        return changed

    def set_disabled(self, admin: User, user: User, disabled: bool) -> None:
        """Disable (every session ends: they are checked against the flag) or enable an account."""
        if user.id == admin.id and disabled:
            raise AdminError("You cannot disable your own account.")
        if bool(user.is_disabled) == disabled:
            return
        user.is_disabled = disabled
        user.updated_at = self.clock.now()
        self.audit.record("user.disable" if disabled else "user.enable", actor=actor_of(admin), target=target_of(user))
        if disabled:
            # Revoked, not masked: enabling the account again does not revive any of them.
            revoked = self.tokens.revoke_for_user(user.id)
            self.audit.record("user.tokens_revoked", actor=actor_of(admin), target=target_of(user),
                              details={"tokens": revoked, "reason": "disabled"})
        db.session.commit()
        if disabled:
            self.sessions.revoke_all(user)

    def reset_password(self, admin: User, user: User) -> str:
        """A new generated password (shown to the admin once); the user's sessions end."""
        password = generate_password()
        user.password_hash = self.accounts.passwords.hash(password)
        user.updated_at = self.clock.now()
        self.audit.record("user.password_reset", actor=actor_of(admin), target=target_of(user))
        db.session.commit()
        self.sessions.revoke_all(user)
        self.accounts.password_changed(user)
        return password

    def resend_invitation(self, admin: User, user: User) -> None:
        """A new invitation link (the earlier ones stop working)."""
        self.mail.invite(user, actor=actor_of(admin))

    def cancel_invitation(self, admin: User, user: User) -> int:
        return self.mail.cancel_invitation(user, actor=actor_of(admin))

    def reset_totp(self, admin: User, user: User) -> bool:
        return self.totp.reset(user, actor=actor_of(admin))

    def reset_passkeys(self, admin: User, user: User) -> int:
        return self.passkeys.reset(user, actor=actor_of(admin))

    def sessions_of(self, user: User) -> list[SsoSession]:
        return sorted(self.sessions.active_for(user), key=lambda s: s.last_seen_at, reverse=True)

    def revoke_sessions(self, admin: User, user: User) -> int:
        count = self.sessions.revoke_all(user)
        self.audit.record("session.revoke_all", actor=actor_of(admin), target=target_of(user),
                          details={"sessions": count}, commit=True)
        return count

    # -- signing keys ----------------------------------------------------------------

    def signing_keys(self) -> list[SigningKey]:
        """Every key still published (active first, then retired, newest first)."""
        now = self.clock.now()
        rows = db.session.scalars(
            select(SigningKey).where(or_(SigningKey.unpublish_at.is_(None), SigningKey.unpublish_at > now))
            .order_by(SigningKey.created_at.desc(), SigningKey.kid)
        )
        return sorted(rows, key=lambda row: row.retired_at is not None)

    def rotate_signing_keys(self, admin: User) -> list[Rotated]:
        """New keys, published now, sign once clients' cached JWKS know them; the old ones stay
        published until what they signed expires."""
        rotated = self.signing.rotate()
        self.audit.record("signing_key.rotate", actor=actor_of(admin), target="signing_keys",
                          details={"kids": [r.kid for r in rotated]}, commit=True)
        return rotated

    # -- audit log -------------------------------------------------------------

    def audit_page(self, filters: AuditFilter, *, before_id: int | None = None,
                   limit: int = EVENTS_PER_PAGE) -> AuditPage:
        """Newest first, `limit` at a time; pages continue by id so new events never shift them."""
        stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
        if filters.actor:
            stmt = stmt.where(AuditEvent.actor == filters.actor)
        if filters.action.endswith("."):
            prefix = filters.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(AuditEvent.action.like(prefix + "%", escape="\\"))
        elif filters.action:
            stmt = stmt.where(AuditEvent.action == filters.action)
        if filters.target:
            stmt = stmt.where(AuditEvent.target == filters.target)
        if filters.since:
            stmt = stmt.where(AuditEvent.at >= filters.since)
        if filters.until:
            stmt = stmt.where(AuditEvent.at < filters.until)
        if before_id:
            stmt = stmt.where(AuditEvent.id < before_id)
        events = list(db.session.scalars(stmt))
        more = len(events) > limit
        events = events[:limit]
        return AuditPage(events, events[-1].id if more else None)


def actor_of(user: User) -> str:
    return f"user:{user.username}"


def target_of(user: User) -> str:
    return f"user:{user.username}"
