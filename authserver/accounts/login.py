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
from ..errors import ApiError
from ..extensions import db
from ..passkeys.service import Assertion, ChallengeExpired, PasskeyService
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
    auth_method: str  # password, password+totp, password+passkey, passkey (key logins: api_key)
    amr: tuple[str, ...]
    acr: str
    # A key login's session is bounded by the key: its id and scopes.
    key_id: str | None = None
    scopes: tuple[str, ...] | None = None


def password_only(user: User) -> LoginResult:
    return LoginResult(user, "password", ("pwd",), ACR_PASSWORD)


def password_and_totp(user: User) -> LoginResult:
    return LoginResult(user, "password+totp", ("pwd", "otp", "mfa"), ACR_MFA)


def password_and_passkey(assertion: Assertion) -> LoginResult:
    """RFC 8176: `hwk` for the authenticator's key, `user` when it verified the user (biometric or PIN)."""
    amr = ("pwd", "hwk", *(("user",) if assertion.user_verified else ()), "mfa")
    return LoginResult(assertion.user, "password+passkey", amr, ACR_MFA)


def passkey_only(assertion: Assertion) -> LoginResult:
    """Passwordless: a discoverable passkey with user verification is both factors."""
    return LoginResult(assertion.user, "passkey", ("hwk", "user", "mfa"), ACR_MFA)


class SecondFactorChoice(ApiError):
    """The password is right and the account has a passkey: answer with one of `methods`. (An
    ApiError, so the error registry keeps its body whole: the options are part of the answer.)"""

    def __init__(self, methods: list[str], webauthn_options: dict, pending: str):
        super().__init__(401, "second_factor_required",
                         "Confirm with a passkey (send the authenticator's answer as \"webauthn\" with "
                         "\"pending_login\") or, where offered, the code from your authenticator app (totp_code).")
        self.methods = methods
        self.webauthn_options = webauthn_options
        self.pending = pending

    def body(self) -> dict:
        return {**super().body(), "methods": self.methods, "webauthn": self.webauthn_options,
                "pending_login": self.pending}


class SecondFactorRequired(AccountError):
    """The password is right and the account has TOTP: send a code."""


class EnrolmentRequired(AccountError):
    """The password is right, policy requires TOTP and the account has none yet."""


class LoginService:
    def __init__(self, accounts: AccountService, totp: TotpService, passkeys: PasskeyService, throttle: Throttle,
                 audit: AuditLog, clock: Clock):
        self.accounts = accounts
        self.totp = totp
        self.passkeys = passkeys
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
        """After a right password: "totp" (the second factor: a code or a passkey), "enrol" (set TOTP
        up first: policy, or the app being signed in to asked for two factors) or None. A passkey
        counts as a second factor for the policy."""
        if self.totp.is_enrolled(user) or self.passkeys.has_passkey(user):
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
        webauthn: str | dict | None = None,
        pending_login: str | None = None,
    ) -> LoginResult:
        """A one-request login (JSON): password, and the code when the account has TOTP. An account
        with a passkey is answered SecondFactorChoice first (its options and a pending login), then
        takes the authenticator's answer with that pending login."""
        user = self.check_password(username, password, address)
        step = self.next_step(user)
        if step is None:
            return password_only(user)
        if step == "enrol":
            raise EnrolmentRequired(
                "This account must set up two-factor authentication first: sign in once in a browser at /login."
            )
        if not totp_code and not recovery_code and self.passkeys.has_passkey(user):
            if webauthn is None:
                handle = self.begin_pending(user, "json", "")
                options = self.passkeys.authentication_options(f"pending:{self.find_pending(handle).id}", user)
                methods = ["webauthn", *(["totp"] if self.totp.is_enrolled(user) else [])]
                raise SecondFactorChoice(methods, options, handle)
            pending = self.find_pending(pending_login)
            if pending is None or pending.user_id != user.id or pending.purpose != "json":
                raise ChallengeExpired()
            result = self.second_factor_passkey(pending, webauthn, address=address)
            self.finish_pending(pending)
            return result
        if not totp_code and not recovery_code:
            raise SecondFactorRequired("Enter the code from your authenticator app (totp_code) or a recovery code.")
        return self.second_factor(user, totp_code=totp_code, recovery_code=recovery_code, address=address)

    def second_factor(
        self, user: User, *, totp_code: str | None, recovery_code: str | None, address: str
    ) -> LoginResult:
        """Raises the totp service's SecondFactorError or TooManyAttempts when the code is not accepted."""
        self.totp.check(user, code=totp_code, recovery_code=recovery_code, address=address, purpose="login")
        return password_and_totp(user)

    def second_factor_passkey(self, pending: PendingLogin, credential: str | dict, *, address: str) -> LoginResult:
        """The passkey answer to the challenge bound to this pending login (browser or JSON), which it spends."""
        assertion = self.passkeys.second_factor(pending.user, f"pending:{pending.id}", credential, address=address)
        return password_and_passkey(assertion)

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
