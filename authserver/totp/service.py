"""TOTP second factor: enrolment, verification, recovery codes, policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..accounts.models import User
from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import SecretSealer, keyed_hash
from ..errors import DomainError
from ..extensions import db
from ..sealing import SealedColumn
from ..throttle import Throttle, TooManyAttempts
from . import otp
from .models import RecoveryCode, TotpCredential

# A pending secret that was never confirmed stops being confirmable after this.
PENDING_LIFETIME = timedelta(hours=1)
POLICIES = ("none", "admins", "all")

T = TypeVar("T")


class SecondFactorError(DomainError):
    """Base for second-factor failures: the API error code and status; the message is safe to show.
    (A login answers every one of them 401: the login is what failed.)"""

    error = "invalid_totp"


class InvalidTotpCode(SecondFactorError):
    status = 400
    error = "invalid_totp"

    def __init__(self, reason: str = "wrong"):
        # One message for a wrong code and a replayed one: neither tells an attacker more.
        super().__init__(
            "The code is not correct or was already used; enter the current code from your authenticator app."
        )
        self.reason = reason


class InvalidRecoveryCode(SecondFactorError):
    status = 400
    error = "invalid_recovery_code"

    def __init__(self):
        super().__init__("The recovery code is not correct or was already used.")


class TotpNotEnrolled(SecondFactorError):
    status = 409
    error = "totp_not_enrolled"

    def __init__(self):
        super().__init__("Two-factor authentication is not set up for this account; set it up first.")


class NoPendingEnrolment(SecondFactorError):
    status = 409
    error = "no_pending_enrolment"

    def __init__(self):
        super().__init__(
            "There is no two-factor set-up waiting for confirmation (or it expired); start the set-up again."
        )


class CurrentFactorRequired(SecondFactorError):
    status = 403
    error = "current_factor_required"

    def __init__(self):
        super().__init__(
            "Two-factor authentication is on: moving to a new authenticator needs a current code from the "
            "old one (or a recovery code)."
        )


class TotpRequiredByPolicy(SecondFactorError):
    status = 403
    error = "totp_required_by_policy"

    def __init__(self):
        super().__init__("This server requires two-factor authentication for your account, so it cannot be turned off.")


@dataclass(frozen=True)
class Enrolment:
    """A pending secret as shown to its owner: once at enrolment (and on the set-up page until confirmed)."""

    secret: str
    otpauth_uri: str
    qr_svg: str
    started_at: datetime


@dataclass(frozen=True)
class TotpStatus:
    enabled: bool
    confirmed_at: datetime | None
    pending: bool
    recovery_codes_left: int
    required: bool

    def as_json(self) -> dict:
        return {
            "enabled": self.enabled,
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "pending": self.pending,
            "recovery_codes_left": self.recovery_codes_left,
            "required": self.required,
        }


class TotpService:
    """Checks second-factor codes; a time step is accepted once per account."""

    def __init__(
        self,
        sealer: SecretSealer,
        pepper: bytes,
        throttle: Throttle,
        audit: AuditLog,
        clock: Clock,
        *,
        issuer_label: str,
        required: str = "none",
        other_factor: Callable[[User], bool] | None = None,
    ):
        if required not in POLICIES:
            raise ValueError(f"TOTP policy must be one of {POLICIES}")
        self.sealer = sealer
        self.pepper = pepper
        self.throttle = throttle
        self.audit = audit
        self.clock = clock
        self.issuer_label = issuer_label
        self.required = required
        self._factor_listeners: list[Callable[[User, str], object]] = []
        # Does the user have another second factor (a passkey)? Then policy lets TOTP go.
        self.other_factor = other_factor or (lambda user: False)

    def on_factor_change(self, listener: Callable[[User, str], object]) -> None:
        """Call `listener(user, "added" | "removed")` after a second factor was activated or removed (committed)."""
        self._factor_listeners.append(listener)

    def _factor_changed(self, user: User, change: str) -> None:
        for listener in self._factor_listeners:
            listener(user, change)

    # -- policy and status -------------------------------------------------

    def is_required_for(self, user: User) -> bool:
        return self.required == "all" or (self.required == "admins" and bool(user.is_admin))

    def is_enrolled(self, user: User) -> bool:
        credential = self._credential(user.id)
        return credential is not None and credential.totp_secret_sealed is not None

    def status(self, user: User) -> TotpStatus:
        credential = self._credential(user.id)
        left = db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        return TotpStatus(
            enabled=credential is not None and credential.totp_secret_sealed is not None,
            confirmed_at=credential.confirmed_at if credential else None,
            pending=credential is not None and self._live_pending(credential),
            recovery_codes_left=left or 0,
            required=self.is_required_for(user),
        )

    # -- enrolment ---------------------------------------------------------

    def begin_enrolment(
        self, user: User, *, actor: str, reuse_pending: bool = False, proof: dict | None = None, address: str = ""
    ) -> Enrolment:
        """A new pending secret (the active one, if any, stays until confirmation).

        Replacing an active factor needs the current one (ASVS 6.4.3): `proof` is
        {"code": …} or {"recovery_code": …}, checked (throttled, audited) like a login's;
        without it CurrentFactorRequired. `reuse_pending` shows the pending secret again
        instead, so reloading a set-up page does not invalidate a QR code already scanned.
        """
        now = self.clock.now()
        credential = self._credential(user.id)
        if credential is not None and credential.totp_secret_sealed is not None:
            if not proof or not (proof.get("code") or proof.get("recovery_code")):
                raise CurrentFactorRequired()
            self.check(
                user,
                code=proof.get("code"),
                recovery_code=proof.get("recovery_code"),
                address=address,
                purpose="replace",
            )
            credential = self._credential(user.id)
        if reuse_pending and credential is not None and self._live_pending(credential):
            secret = self.sealer.unseal(credential.pending_secret_sealed, self._context(user.id))
            return self._enrolment(user, secret, credential.pending_since)
        secret = otp.new_secret()
        sealed = self.sealer.seal(secret, self._context(user.id))
        replacing = credential is not None and credential.totp_secret_sealed is not None
        if credential is None:
            db.session.add(
                TotpCredential(
                    user_id=user.id, pending_secret_sealed=sealed, pending_since=now, last_step=0, updated_at=now
                )
            )
            try:
                db.session.flush()
            except IntegrityError:  # a concurrent enrolment created the row first
                db.session.rollback()
                credential = self._credential(user.id)
        if credential is not None:
            db.session.execute(
                update(TotpCredential)
                .where(TotpCredential.user_id == user.id)
                .values(pending_secret_sealed=sealed, pending_since=now, updated_at=now)
            )
        self.audit.record("totp.enrol", actor=actor, target=self._target(user), details={"replacing": replacing})
        db.session.commit()
        return self._enrolment(user, secret, now)

    def pending_enrolment(self, user: User) -> Enrolment | None:
        credential = self._credential(user.id)
        if credential is None or not self._live_pending(credential):
            return None
        secret = self.sealer.unseal(credential.pending_secret_sealed, self._context(user.id))
        return self._enrolment(user, secret, credential.pending_since)

    def confirm_enrolment(self, user: User, code: str, *, actor: str, address: str) -> list[str]:
        """Activate the pending secret with one correct code; answers the new recovery codes (shown once)."""
        return self._throttled(user, address, "confirm", lambda: self._confirm(user, code, actor))

    def _confirm(self, user: User, code: str, actor: str) -> list[str]:
        now = self.clock.now()
        credential = self._credential(user.id)
        if credential is None or not self._live_pending(credential):
            raise NoPendingEnrolment()
        sealed = credential.pending_secret_sealed
        replacing = credential.totp_secret_sealed is not None
        secret = self.sealer.unseal(sealed, self._context(user.id))
        step = otp.matching_step(secret, code, otp.time_step(now))
        if step is None:
            raise InvalidTotpCode()
        # Conditional on the very pending secret checked: of two concurrent confirmations one wins.
        result = db.session.execute(
            update(TotpCredential)
            .where(TotpCredential.user_id == user.id, TotpCredential.pending_secret_sealed == sealed)
            .values(
                totp_secret_sealed=sealed,
                pending_secret_sealed=None,
                pending_since=None,
                last_step=step,
                confirmed_at=now,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise NoPendingEnrolment()
        codes = self._replace_recovery_codes(user, now)
        self.audit.record("totp.confirm", actor=actor, target=self._target(user), details={"replaced": replacing})
        db.session.commit()
        self._factor_changed(user, "added")
        return codes

    # -- verification ------------------------------------------------------

    def check(
        self, user: User, *, code: str | None = None, recovery_code: str | None = None, address: str, purpose: str
    ) -> str:
        """Check a TOTP code or a recovery code, throttled and audited; answers which one was used."""
        if code:
            self._throttled(user, address, purpose, lambda: self.verify(user, code))
            return "totp"
        if recovery_code:
            self._throttled(user, address, purpose, lambda: self.use_recovery_code(user, recovery_code))
            return "recovery_code"
        raise InvalidTotpCode("missing")

    def verify(self, user: User, code: str) -> int:
        """Accept a code once: answers the time step it was accepted for, or raises InvalidTotpCode."""
        credential = self._credential(user.id)
        if credential is None or credential.totp_secret_sealed is None:
            raise TotpNotEnrolled()
        sealed = credential.totp_secret_sealed
        secret = self.sealer.unseal(sealed, self._context(user.id))
        step = otp.matching_step(secret, code, otp.time_step(self.clock.now()))
        if step is None:
            raise InvalidTotpCode()
        # The one atomic conditional UPDATE that accepts a step: of two concurrent
        # submissions (or a replay) only the first raises last_step, the other matches no row.
        result = db.session.execute(
            update(TotpCredential)
            .where(
                TotpCredential.user_id == user.id,
                TotpCredential.last_step < step,
                TotpCredential.totp_secret_sealed == sealed,
            )
            .values(last_step=step, updated_at=self.clock.now())
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise InvalidTotpCode("reused")
        db.session.commit()
        return step

    def use_recovery_code(self, user: User, code: str) -> None:
        """Spend one recovery code (atomically: of two concurrent uses one wins)."""
        canonical = otp.normalise_recovery_code(code)
        if canonical is None:
            raise InvalidRecoveryCode()
        now = self.clock.now()
        result = db.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hmac == self._code_hmac(user.id, canonical),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise InvalidRecoveryCode()
        left = db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        self.audit.record(
            "totp.recovery_code.use", actor=self._target(user), target=self._target(user), details={"left": left}
        )
        db.session.commit()

    # -- changes by the owner or an admin ---------------------------------

    def regenerate_recovery_codes(
        self, user: User, *, code: str | None = None, recovery_code: str | None = None, actor: str, address: str
    ) -> list[str]:
        """A fresh set of recovery codes after a current code; the old set stops working."""
        if not self.is_enrolled(user):
            raise TotpNotEnrolled()
        self.check(user, code=code, recovery_code=recovery_code, address=address, purpose="regenerate")
        codes = self._replace_recovery_codes(user, self.clock.now())
        self.audit.record("totp.recovery_codes.regenerate", actor=actor, target=self._target(user))
        db.session.commit()
        return codes

    def disable(
        self, user: User, *, code: str | None = None, recovery_code: str | None = None, actor: str, address: str
    ) -> None:
        """Turn TOTP off after a current code, unless policy requires it for this user."""
        if not self.is_enrolled(user):
            raise TotpNotEnrolled()
        if self.is_required_for(user) and not self.other_factor(user):
            raise TotpRequiredByPolicy()
        self.check(user, code=code, recovery_code=recovery_code, address=address, purpose="disable")
        self._remove(user)
        self.audit.record("totp.disable", actor=actor, target=self._target(user))
        db.session.commit()
        self._factor_changed(user, "removed")

    def reset(self, user: User, *, actor: str) -> bool:
        """An admin's reset: secret, pending secret and recovery codes gone. Answers whether there was any."""
        existed = self._credential(user.id) is not None
        self._remove(user)
        self.audit.record("totp.reset", actor=actor, target=self._target(user), details={"had_totp": existed})
        db.session.commit()
        if existed:
            self._factor_changed(user, "removed")
        return existed

    # -- master-key rotation ----------------------------------------------

    def sealed_columns(self) -> list[SealedColumn]:
        """Where secrets are sealed: the active and the pending one of each credential."""
        return [SealedColumn(TotpCredential, column, lambda row: self._context(row.user_id))
                for column in ("totp_secret_sealed", "pending_secret_sealed")]

    def reseal_all(self, sealer: SecretSealer) -> int:
        """Re-seal every active and pending secret under `sealer` (current transaction, no commit)."""
        return sum(column.reseal(sealer) for column in self.sealed_columns())

    # -- internals ---------------------------------------------------------

    def _throttled(self, user: User, address: str, purpose: str, attempt: Callable[[], T]) -> T:
        try:
            counted = self.throttle.begin("totp", f"user:{user.sub}", (address or "-")[:45])
        except TooManyAttempts as exc:
            self.audit.record(
                "totp.throttled",
                actor=self._target(user),
                target=self._target(user),
                outcome="failure",
                details={"purpose": purpose, "retry_after": exc.retry_after},
                commit=True,
            )
            raise
        try:
            result = attempt()
        except (InvalidTotpCode, InvalidRecoveryCode) as exc:
            self.throttle.failed(counted)
            reason = exc.reason if isinstance(exc, InvalidTotpCode) else "recovery_code"
            self.audit.record(
                "totp.failed",
                actor=self._target(user),
                target=self._target(user),
                outcome="failure",
                details={"purpose": purpose, "reason": reason},
                commit=True,
            )
            raise
        self.throttle.succeeded(counted)
        return result

    def _credential(self, user_id: int) -> TotpCredential | None:
        # populate_existing: a row read earlier in this session may have been changed by another request.
        return db.session.scalar(
            select(TotpCredential).where(TotpCredential.user_id == user_id).execution_options(populate_existing=True)
        )

    def _live_pending(self, credential: TotpCredential) -> bool:
        return (
            credential.pending_secret_sealed is not None
            and credential.pending_since is not None
            and self.clock.now() - credential.pending_since < PENDING_LIFETIME
        )

    def _enrolment(self, user: User, secret: bytes, started_at: datetime) -> Enrolment:
        uri = otp.otpauth_uri(secret, issuer=self.issuer_label, account=user.username)
        return Enrolment(secret=otp.secret_text(secret), otpauth_uri=uri, qr_svg=otp.qr_svg(uri), started_at=started_at)

    def _replace_recovery_codes(self, user: User, now: datetime) -> list[str]:
        codes = otp.new_recovery_codes()
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        db.session.add_all(
            RecoveryCode(
                user_id=user.id, code_hmac=self._code_hmac(user.id, otp.normalise_recovery_code(c)), created_at=now
            )
            for c in codes
        )
        return codes

    def _remove(self, user: User) -> None:
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        db.session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))

    def _code_hmac(self, user_id: int, canonical: str) -> str:
        # Keyed with the pepper and bound to the user: a leaked table alone cannot be brute-forced offline.
        return keyed_hash(self.pepper, f"recovery:{user_id}:{canonical}")

    @staticmethod
    def _context(user_id: int) -> bytes:
        return f"totp-secret:user:{user_id}".encode()

    @staticmethod
    def _target(user: User) -> str:
        return f"user:{user.username}"
