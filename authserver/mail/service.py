"""What the server mails: address verification, password reset, invitations, security notices.

Every message is rendered when the event happens and queued in the outbox (sent by a worker
thread, outside the request). Links are single-use (`links.LinkStore`) and built from the issuer.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from flask import render_template
from sqlalchemy import func, select, update

from ..accounts.models import User
from ..accounts.service import AccountService, InvalidUserInput, SessionService
from ..audit.service import AuditLog
from ..clock import Clock
from ..errors import DomainError
from ..extensions import db
from ..settings import Settings
from ..throttle import Bucket, Throttle, TooManyAttempts
from .links import LinkInvalid, LinkStore
from .outbox import Outbox

log = logging.getLogger("authserver.mail")

MIN_PASSWORD, MAX_PASSWORD = 8, 1024

SUBJECTS = {
    "verify": "Confirm your email address",
    "reset": "Reset your password",
    "invite": "You are invited",
    "factor_added": "Two-factor sign-in was turned on",
    "factor_removed": "Two-factor sign-in was turned off",
    "factor_added:passkey": "A passkey was added",
    "factor_removed:passkey": "A passkey was removed",
    "key_minted:rotated": "A new secret was made for an API key",
    "password_changed": "Your password was changed",
    "key_minted": "A new API key was created",
    "email_changed": "Your email address was changed",
    "test": "Test message",
}


class MailOff(DomainError):
    status = 404
    error = "mail_off"

    def __init__(self):
        super().__init__("This server does not send mail (no SMTP relay is set up), so this cannot be done by "
                         "email. Ask an administrator.")


class NoAddress(DomainError):
    status = 400
    error = "no_email"

    def __init__(self, description: str = "The account has no email address to send to; add one first."):
        super().__init__(description, field="email")


def check_new_password(password: str | None) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidUserInput("A password has 8 to 1024 characters.", field="new_password")
    return password


RESET_JOB = "reset_request"


class MailService:
    def __init__(self, settings: Settings, outbox: Outbox | None, links: LinkStore, accounts: AccountService,
                 sessions: SessionService, audit: AuditLog, throttle: Throttle, clock: Clock):
        self.settings = settings
        self.outbox = outbox
        self.links = links
        self.accounts = accounts
        self.sessions = sessions
        self.audit = audit
        self.throttle = throttle
        self.clock = clock
        self.site = urlsplit(settings.issuer).hostname or "authserver"
        if outbox is not None:
            outbox.jobs[RESET_JOB] = self._mail_reset
            accounts.on_password_change(lambda user: self.notice(user, "password_changed"))
            accounts.on_email_change(self._email_changed)

    @property
    def enabled(self) -> bool:
        return self.outbox is not None

    def _require(self) -> Outbox:
        if self.outbox is None:
            raise MailOff()
        return self.outbox

    def link(self, path: str) -> str:
        return self.settings.issuer.rstrip("/") + path

    def _render(self, template: str, kind: str, **context) -> tuple[str, str, str]:
        title = SUBJECTS.get(f"{kind}:{context.get('variant')}") or SUBJECTS[kind]
        subject = f"{title} · {self.site}"
        context.update(site=self.site, subject=title, kind=kind, issuer=self.settings.issuer)
        return (subject, render_template(f"mail/messages/{template}.txt", **context),
                render_template(f"mail/messages/{template}.html", **context))

    def _queue(self, kind: str, recipient: str, template: str, **context) -> None:
        subject, text, html = self._render(template, kind, **context)
        self._require().add(kind=kind, recipient=recipient, subject=subject, text=text, html=html)

    # -- verification -----------------------------------------------------------

    def send_verification(self, user: User, *, actor: str) -> None:
        """A link to the user's current address; earlier verification links die."""
        self._require()
        if not user.email:
            raise NoAddress()
        if user.email_verified:
            raise InvalidUserInput("This address is verified already.", field="email")
        self.throttle.consume(Bucket("verify:account", f"user:{user.sub}"))
        self.links.withdraw(user, "verify")
        hours = self.settings.verify_link_hours
        token = self.links.issue(user, "verify", timedelta(hours=hours))
        self._queue("verify", user.email, "verify", user=user, url=self.link(f"/email/verify/{token}"),
                    lifetime=f"{hours} hours")
        self.audit.record("email.verification_sent", actor=actor, target=f"user:{user.username}")
        db.session.commit()

    def verify(self, token: str | None) -> User:
        link = self.links.spend(token, "verify")
        user = link.user
        if not self._mark_verified(user, link.email):
            db.session.rollback()
            raise LinkInvalid()
        self.audit.record("email.verified", actor=f"user:{user.username}", target=f"user:{user.username}")
        db.session.commit()
        return user

    def _mark_verified(self, user: User, address: str) -> bool:
        """The user's address verified, if it is still the one a link was mailed to: one
        conditional UPDATE, so that an address changed meanwhile is never the one marked."""
        if not address:
            return False
        done = db.session.execute(
            update(User).where(User.id == user.id, func.lower(User.email) == address.lower())
            .values(email_verified=True, updated_at=self.clock.now())
        ).rowcount
        db.session.refresh(user)
        return done == 1

    def _email_changed(self, user: User, old_email: str, old_verified: bool) -> None:
        # Only an address that was proven the user's is told: nobody can have notices sent to
        # strangers' addresses by switching their own account between them.
        if old_email and old_verified:
            self.notice(user, "email_changed", to=old_email, new_email=user.email)
        if user.email and not user.email_verified:
            try:
                self.send_verification(user, actor="system")
            except TooManyAttempts:
                # The address is saved; its link waits until the account page's button may send again.
                log.info("verification link not sent: too many for this account", extra={"mail": {
                    "kind": "verify", "user": user.username}})

    # -- password reset -----------------------------------------------------------

    def request_reset(self, email: str, address: str) -> None:
        """Queue a reset for the address: the worker mails a link if an active account has it.

        The request itself never looks the address up, so it does the same work and writes the
        same rows whether or not there is an account (no enumeration by its answer or its time):
        one sealed job, one audit row. Throttled per client address and per email address (one
        address, one account) before anything is written."""
        outbox = self._require()
        email = (email or "").strip()
        self.throttle.consume(Bucket("reset:address", (address or "-")[:45]),
                              Bucket("reset:account", email.casefold()[:200]))
        outbox.add_job(RESET_JOB, {"email": email})
        # Without the address: a probe's guesses are not kept.
        self.audit.record("user.password_reset_requested", actor="anonymous")
        db.session.commit()

    def _mail_reset(self, job: dict) -> None:
        """The worker's half of a reset request: a link to the active account with this address,
        if there is one (in the worker's transaction); nothing at all otherwise."""
        email = job.get("email") or ""
        user = db.session.scalar(select(User).where(func.lower(User.email) == email.lower()).limit(1)) if email \
            else None
        if user is None or user.is_disabled:
            return
        minutes = self.settings.reset_link_minutes
        token = self.links.issue(user, "reset", timedelta(minutes=minutes))
        self._queue("reset", user.email, "reset", user=user, url=self.link(f"/password/reset/{token}"),
                    lifetime=f"{minutes} minutes")
        self.audit.record("user.password_reset_mailed", actor="system", target=f"user:{user.username}")

    def complete_reset(self, token: str | None, password: str | None) -> User:
        """Set the new password through a reset link (once); every session and refresh token ends
        (the password-change path), the second factor stays. The link proves the mailbox: the
        address is verified."""
        check_new_password(password)
        link = self.links.spend(token, "reset")
        user = link.user
        self._mark_verified(user, link.email)  # the link proves that mailbox, if it is still the user's
        self.accounts.set_password(user, password, actor=f"user:{user.username}")
        ended = self.sessions.revoke_all(user)
        self.audit.record("session.revoke_all", actor=f"user:{user.username}", target=f"user:{user.username}",
                          details={"sessions": ended, "reason": "password_reset"}, commit=True)
        return user

    # -- invitations ------------------------------------------------------------

    def invite(self, user: User, *, actor: str) -> None:
        """Mail `user` a link to choose a password; earlier invitations die."""
        self._require()
        if not user.email:
            raise NoAddress("An invitation goes by email: enter the user's email address.")
        if user.password_hash is not None:
            raise InvalidUserInput("This user has a password already; there is nothing to invite them to.")
        self.links.withdraw(user, "invite")
        days = self.settings.invitation_days
        token = self.links.issue(user, "invite", timedelta(days=days))
        self._queue("invite", user.email, "invite", user=user, url=self.link(f"/invite/{token}"),
                    lifetime=f"{days} days")
        self.audit.record("user.invite", actor=actor, target=f"user:{user.username}", details={"days": days})
        db.session.commit()

    def cancel_invitation(self, user: User, *, actor: str) -> int:
        """The invitation's links die, and an account nobody has taken up (no password yet) is
        disabled: the invited mailbox cannot take it up another way (a password reset) either."""
        cancelled = self.links.withdraw(user, "invite")
        if user.password_hash is None:
            user.is_disabled = True
            self.links.withdraw(user, "reset")
        self.audit.record("user.invite_cancel", actor=actor, target=f"user:{user.username}",
                          details={"links": cancelled, "disabled": bool(user.is_disabled)})
        db.session.commit()
        return cancelled

    def pending_invitations(self) -> dict[int, object]:
        """user id → the live invitation link (newest), for the admin console."""
        pending: dict[int, object] = {}
        for link in self.links.live("invite"):
            pending.setdefault(link.user_id, link)
        return pending

    def accept_invitation(self, token: str | None, password: str | None) -> User:
        check_new_password(password)
        link = self.links.spend(token, "invite")
        user = link.user
        self._mark_verified(user, link.email)  # the link came to this address
        self.accounts.set_password(user, password, actor=f"user:{user.username}")
        return user

    # -- the operator's test ----------------------------------------------------

    def send_test(self, recipient: str, *, actor: str):
        """A test message to `recipient`, sent now in this thread: the outbox row after the try
        (`sent_at` set, or `last_error` saying why not)."""
        outbox = self._require()
        recipient = recipient.strip()
        if not recipient or len(recipient) > 320 or any(c.isspace() or not c.isprintable() for c in recipient) \
                or recipient.count("@") != 1:
            raise NoAddress("Give one email address to send the test message to.")
        subject, text, html = self._render("test", "test")
        row = outbox.add(kind="test", recipient=recipient, subject=subject, text=text, html=html)
        self.audit.record("mail.test", actor=actor, target="mail")
        db.session.commit()
        outbox.drain()
        db.session.refresh(row)
        return row

    # -- notices ----------------------------------------------------------------

    def notice(self, user: User, kind: str, *, to: str | None = None, **context) -> None:
        """A security notice, when mail is on, the notice is not turned off and there is an address."""
        recipient = to or user.email
        if self.outbox is None or kind not in self.settings.mail_notices or not recipient:
            return
        # A text partial (no escaping) rendered on its own, so that notice.html escapes it whole.
        sentence = render_template("mail/messages/_notice_sentence.txt", user=user, site=self.site, kind=kind,
                                   **context)
        self._queue(kind, recipient, "notice", user=user, at=self.clock.now(),
                    account_url=self.link("/account"), sentence=sentence, **context)
        db.session.commit()

    def factor_changed(self, user: User, change: str) -> None:
        self.notice(user, "factor_added" if change == "added" else "factor_removed")

    def passkey_changed(self, user: User, change: str, name: str) -> None:
        self.notice(user, "factor_added" if change == "added" else "factor_removed", variant="passkey",
                    factor="passkey", factor_name=name)

    def key_minted(self, key) -> None:
        """A key minted, or a new secret made for one (rotation: whoever holds it holds the account)."""
        rotated = key.rotated_at is not None
        self.notice(key.user, "key_minted", key_id=key.key_id, key_name=key.name,
                    variant="rotated" if rotated else None, rotated=rotated)
