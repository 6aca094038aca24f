"""The login flow: a password, then the second factor when the user has one or policy wants one.

Password-specific logic stays in `LoginService.password_login` and
`check_password`, so other credentials (API keys, which never ask for TOTP)
can sit beside it in the same JSON login and still end in a `LoginResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from ..audit.service import AuditLog
from ..clock import Clock
from ..cookies import PENDING_LOGIN_LIFETIME
from ..crypto import random_token, token_hash
from ..extensions import db
from ..throttle import Throttle, TooManyAttempts
from ..totp.service import TotpService
from .acr import ACR_MFA, ACR_PASSWORD
from .models import PendingLogin, User
from .service import (
    AccountError,
    AccountService,
    InvalidCredentials,
    normalise_username,
)


@dataclass(frozen=True)
class LoginResult:
    """How a user proved who they are; the SSO session records exactly this."""

    user: User
    auth_method: str  # password, password+totp (key logins: api_key)
    amr: tuple[str, ...]
    acr: str
    # A key login's session is bounded by the key: its id and scopes.
    key_id: str | None = None
    scopes: tuple[str, ...] | None = None


def password_only(user: User) -> LoginResult:
    return LoginResult(user, "password", ("pwd",), ACR_PASSWORD)


def password_and_totp(user: User) -> LoginResult:
    return LoginResult(user, "password+totp", ("pwd", "otp", "mfa"), ACR_MFA)


class SecondFactorRequired(AccountError):
    """The password is right and the account has TOTP: send a code."""


class EnrolmentRequired(AccountError):
    """The password is right, policy requires TOTP and the account has none yet."""


class LoginService:
    def __init__(self, accounts: AccountService, totp: TotpService, throttle: Throttle, audit: AuditLog, clock: Clock):
        self.accounts = accounts
        self.totp = totp
        self.throttle = throttle
        self.audit = audit
        self.clock = clock

    def check_password(self, username: str, password: str, address: str) -> User:
        """The user, or InvalidCredentials / TooManyAttempts.

        Unknown and known usernames take the same path: the account bucket is
        keyed by the name as typed (folded), the password is checked against a
        dummy hash, and the answer is the same.
        """
        actor = f"user:{username[:150]}"
        try:
            attempt = self.throttle.begin("password", normalise_username(username)[:150], (address or "-")[:45])
        except TooManyAttempts as exc:
            self.audit.record(
                "login.throttled", actor=actor, outcome="failure", details={"retry_after": exc.retry_after}, commit=True
            )
            raise
        try:
            user = self.accounts.check_password(username, password)
        except InvalidCredentials:
            self.throttle.failed(attempt)
            self.audit.record(
                "login.failed", actor=actor, outcome="failure", details={"reason": "password"}, commit=True
            )
            raise
        self.throttle.succeeded(attempt)
        return user

    def next_step(self, user: User, *, second_factor_wanted: bool = False) -> str | None:
        """After a right password: "totp" (enter a code), "enrol" (set TOTP up first: policy, or
        the app being signed in to asked for two factors) or None."""
        if self.totp.is_enrolled(user):
            return "totp"
        if second_factor_wanted or self.totp.is_required_for(user):
            return "enrol"
        return None

    def password_login(
        self,
        username: str,
        password: str,
        address: str,
        *,
        totp_code: str | None = None,
        recovery_code: str | None = None,
    ) -> LoginResult:
        """A one-request login (JSON): password, and the code when the account has TOTP."""
        user = self.check_password(username, password, address)
        step = self.next_step(user)
        if step is None:
            return password_only(user)
        if step == "enrol":
            raise EnrolmentRequired(
                "This account must set up two-factor authentication first: sign in once in a browser at /login."
            )
        if not totp_code and not recovery_code:
            raise SecondFactorRequired("Enter the code from your authenticator app (totp_code) or a recovery code.")
        return self.second_factor(user, totp_code=totp_code, recovery_code=recovery_code, address=address)

    def second_factor(
        self, user: User, *, totp_code: str | None, recovery_code: str | None, address: str
    ) -> LoginResult:
        """Raises the totp service's SecondFactorError or TooManyAttempts when the code is not accepted."""
        self.totp.check(user, code=totp_code, recovery_code=recovery_code, address=address, purpose="login")
        return password_and_totp(user)

    # -- the half-logged-in state between /login and /login/totp -----------

    def begin_pending(self, user: User, purpose: str, next_url: str) -> str:
        """Store the half-done login; answers the handle for the cookie (only its hash is stored)."""
        now = self.clock.now()
        db.session.execute(delete(PendingLogin).where(PendingLogin.expires_at <= now))
        handle = random_token(32)
        db.session.add(
            PendingLogin(
                token_hash=token_hash(handle),
                user_id=user.id,
                purpose=purpose,
                next_url=next_url,
                created_at=now,
                expires_at=now + PENDING_LOGIN_LIFETIME,
            )
        )
        db.session.commit()
        return handle

    def find_pending(self, handle: str | None) -> PendingLogin | None:
        if not handle or len(handle) > 128:
            return None
        pending = db.session.scalar(select(PendingLogin).where(PendingLogin.token_hash == token_hash(handle)))
        if pending is None or pending.expires_at <= self.clock.now() or pending.user.is_disabled:
            return None
        return pending

    def finish_pending(self, pending: PendingLogin) -> bool:
        """Spend the pending login; of two concurrent completions only one gets True."""
        result = db.session.execute(
            delete(PendingLogin).where(PendingLogin.id == pending.id, PendingLogin.expires_at > self.clock.now())
        )
        db.session.commit()
        return result.rowcount == 1
