"""Passkeys (WebAuthn) on py_webauthn: registration, assertion as a second factor or passwordless.

Every CBOR, COSE and attestation structure is parsed by the `webauthn` library; this module
holds what the library leaves to the relying party: challenges (random, single-use, five
minutes, bound server-side to what asked for them), the credentials, their signature counters,
throttling and the audit log.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import webauthn
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from webauthn.helpers import (
    bytes_to_base64url,
    parse_attestation_object,
    parse_authenticator_data,
    parse_client_data_json,
)
from webauthn.helpers.cose import COSECRV, COSEAlgorithmIdentifier
from webauthn.helpers.decode_credential_public_key import DecodedEC2PublicKey, decode_credential_public_key
from webauthn.helpers.decoded_public_key_to_cryptography import decoded_public_key_to_cryptography
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..accounts.models import User
from ..audit.service import AuditLog
from ..clock import Clock
from ..crypto import token_hash
from ..errors import DomainError
from ..extensions import db
from ..throttle import Throttle, TooManyAttempts
from .models import Passkey, PasskeyChallenge

CHALLENGE_LIFETIME = timedelta(minutes=5)
# ES256, EdDSA, RS256, in the order of preference sent to the authenticator.
ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
MAX_PASSKEYS = 20
MAX_CREDENTIAL_JSON = 64 * 1024

T = TypeVar("T")



# What parsing and checking an authenticator's answer may raise on malformed input (nesting deep
# enough for the recursion limit included): a 400 "malformed", never a 500.
MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
             OverflowError)

class PasskeyError(DomainError):
    """Base for passkey failures; the message is safe to show and names the fix."""

    status = 400
    error = "passkey_rejected"


class PasskeyRejected(PasskeyError):
    """The authenticator's answer does not check out (signature, origin, rp_id, flags, format)."""

    def __init__(self, description: str, reason: str):
        super().__init__(description)
        self.reason = reason


class ChallengeExpired(PasskeyError):
    error = "passkey_challenge_expired"

    def __init__(self):
        super().__init__("The passkey request expired or was already used; start again.")


class PasskeyNotFound(PasskeyError):
    status = 404
    error = "passkey_not_found"

    def __init__(self):
        super().__init__("There is no such passkey on this account; it may have been removed already.")


class TooManyPasskeys(PasskeyError):
    status = 409
    error = "too_many_passkeys"

    def __init__(self):
        super().__init__(f"An account has at most {MAX_PASSKEYS} passkeys; remove one you no longer use first.")


class LastFactorRequired(PasskeyError):
    status = 403
    error = "second_factor_required_by_policy"

    def __init__(self):
        super().__init__("This server requires a second factor for your account: set up TOTP or another passkey "
                         "before removing the last one.")


@dataclass(frozen=True)
class Assertion:
    """A passkey that signed in: whose, which, and whether the authenticator verified the user."""

    user: User
    passkey: Passkey
    user_verified: bool


def relying_party(issuer: str) -> tuple[str, str]:
    """(rp_id, origin) from the issuer: the host, and scheme://host[:port]."""
    parts = urlsplit(issuer)
    return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"


class PasskeyService:
    """Registers and checks passkeys; one verification path for the browser and the JSON login."""

    def __init__(self, issuer: str, rp_name: str, throttle: Throttle, audit: AuditLog, clock: Clock):
        self.rp_id, self.origin = relying_party(issuer)
        self.rp_name = rp_name
        self.throttle = throttle
        self.audit = audit
        self.clock = clock
        self._factor_listeners: list = []

    # -- what a user has ------------------------------------------------------

    def on_factor_change(self, listener) -> None:
        """Call `listener(user, "added" | "removed", name)` after a passkey was added or removed (committed)."""
        self._factor_listeners.append(listener)

    def _factor_changed(self, user: User, change: str, name: str) -> None:
        for listener in self._factor_listeners:
            listener(user, change, name)

    def list_for(self, user: User) -> list[Passkey]:
        return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))

    def count_for(self, user: User) -> int:
        return db.session.scalar(select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)) or 0

    def has_passkey(self, user: User) -> bool:
        return self.count_for(user) > 0

    # -- challenges -----------------------------------------------------------

    def _issue(self, binding: str, purpose: str, user: User | None) -> bytes:
        """A fresh challenge for `binding`; any earlier one of the same binding stops working."""
        now = self.clock.now()
        challenge = secrets.token_bytes(32)
        db.session.execute(delete(PasskeyChallenge).where(
            or_(PasskeyChallenge.expires_at <= now, PasskeyChallenge.binding == binding)))
        db.session.add(PasskeyChallenge(binding=binding, purpose=purpose, challenge=bytes_to_base64url(challenge),
                                        user_id=user.id if user else None, created_at=now,
                                        expires_at=now + CHALLENGE_LIFETIME))
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent request of the same binding won; its challenge stands
            db.session.rollback()
            raise ChallengeExpired() from None
        return challenge

    def _consume(self, binding: str, purpose: str, user: User | None) -> bytes:
        """The binding's challenge, spent: of two concurrent uses one gets it, the other ChallengeExpired."""
        row = db.session.scalar(select(PasskeyChallenge).where(PasskeyChallenge.binding == binding)
                                .execution_options(populate_existing=True))
        if row is None:
            raise ChallengeExpired()
        result = db.session.execute(delete(PasskeyChallenge).where(
            PasskeyChallenge.id == row.id, PasskeyChallenge.expires_at > self.clock.now()))
        db.session.commit()
        if (result.rowcount != 1 or row.purpose != purpose
                or (user is not None and row.user_id != user.id)):
            raise ChallengeExpired()
        return webauthn.base64url_to_bytes(row.challenge)

    # -- registration ---------------------------------------------------------

    def registration_options(self, user: User, binding: str) -> dict:
        """Options for navigator.credentials.create(), as JSON-ready data; the challenge is kept for `binding`."""
        if self.count_for(user) >= MAX_PASSKEYS:
            raise TooManyPasskeys()
        challenge = self._issue(binding, "register", user)
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_id=user.sub.encode(),
            user_name=user.username,
            user_display_name=user.name or user.username,
            challenge=challenge,
            timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[self._descriptor(p) for p in self.list_for(user)],
            supported_pub_key_algs=ALGORITHMS,
        )
        return json.loads(webauthn.options_to_json(options))

    def register(self, user: User, binding: str, credential: str, name: str, *, actor: str) -> Passkey:
        """Check the authenticator's answer to `registration_options` and keep the passkey."""
        # Shown to admins: no control, format (bidi) or unassigned characters.
        name = "".join(c for c in (name or "") if unicodedata.category(c)[0] != "C" or c == " ")
        name = " ".join(name.split())[:100] or "Passkey"
        parsed = self._parse(credential)
        challenge = self._consume(binding, "register", user)
        self._check_client_and_rp(parsed, "webauthn.create", require_uv=False)
        try:
            verified = webauthn.verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                supported_pub_key_algs=ALGORITHMS,
            )
        except MALFORMED as exc:
            raise self._refused(exc) from None
        try:
            # The key must be one that can ever verify (a point on its curve, a sane RSA exponent,
            # the curve its algorithm names): a dead entry would count as a second factor.
            decoded = decode_credential_public_key(verified.credential_public_key)
            decoded_public_key_to_cryptography(decoded)
            if isinstance(decoded, DecodedEC2PublicKey) and decoded.crv != COSECRV.P256:
                raise ValueError("ES256 needs a P-256 key")
        except MALFORMED:
            raise PasskeyRejected("The passkey's public key is not a valid key; try again with another "
                                  "authenticator.", "invalid_key") from None
        if self.count_for(user) >= MAX_PASSKEYS:
            raise TooManyPasskeys()
        now = self.clock.now()
        transports = parsed.get("response", {}).get("transports") if isinstance(parsed.get("response"), dict) else None
        known = {t.value for t in AuthenticatorTransport}
        passkey = Passkey(
            user_id=user.id,
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=name,
            transports=[t for t in transports if t in known][:8] if isinstance(transports, list) else [],
            aaguid=str(verified.aaguid or "")[:36],
            backed_up=bool(verified.credential_backed_up),
            created_at=now,
        )
        db.session.add(passkey)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise PasskeyRejected("This passkey is already registered; use it to sign in, or register another.",
                                  "duplicate") from None
        self.audit.record("passkey.register", actor=actor, target=f"user:{user.username}",
                          details={"passkey": passkey.id, "name": name})
        db.session.commit()
        self._factor_changed(user, "added", name)
        return passkey

    # -- assertion ------------------------------------------------------------

    def authentication_options(self, binding: str, user: User | None) -> dict:
        """Options for navigator.credentials.get(). With a user (second factor): their passkeys,
        user verification preferred. Without (passwordless): any discoverable one, verification required."""
        purpose = "second" if user is not None else "passwordless"
        challenge = self._issue(binding, purpose, user)
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
            allow_credentials=[self._descriptor(p) for p in self.list_for(user)] if user is not None else [],
            user_verification=(UserVerificationRequirement.PREFERRED if user is not None
                               else UserVerificationRequirement.REQUIRED),
        )
        return json.loads(webauthn.options_to_json(options))

    def second_factor(self, user: User, binding: str, credential: str, *, address: str) -> Assertion:
        """A passkey of `user` after their password; throttled with the TOTP attempts of the account."""
        return self._throttled("totp", f"user:{user.sub}", address, user,
                               lambda: self._assert(binding, "second", credential, user, require_uv=False))

    def passwordless(self, binding: str, credential: str, *, address: str) -> Assertion:
        """A discoverable passkey with user verification: both factors in one."""
        return self._throttled("passkey", "passwordless", address, None,
                               lambda: self._assert(binding, "passwordless", credential, None, require_uv=True))

    def _assert(self, binding: str, purpose: str, credential: str, user: User | None, *,
                require_uv: bool) -> Assertion:
        parsed = self._parse(credential)
        challenge = self._consume(binding, purpose, user)
        self._check_client_and_rp(parsed, "webauthn.get", require_uv=require_uv)
        raw_id = parsed.get("id")
        passkey = db.session.scalar(select(Passkey).where(Passkey.credential_id == raw_id[:1400])
                                    .execution_options(populate_existing=True)) if isinstance(raw_id, str) else None
        if passkey is None or (user is not None and passkey.user_id != user.id):
            # Another user's passkey is as unknown here as one never registered.
            raise PasskeyRejected("This passkey is not registered for this account.", "unknown_credential")
        owner = db.session.get(User, passkey.user_id)
        handle = parsed.get("response", {}).get("userHandle")
        if purpose == "passwordless" and handle != bytes_to_base64url(owner.sub.encode()):
            raise PasskeyRejected("This passkey is not registered for this account.", "user_handle")
        if owner.is_disabled:
            raise PasskeyRejected("This passkey is not registered for this account.", "disabled")
        try:
            # The counter is checked below, after the signature, with the atomic update that records it.
            verified = webauthn.verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=0,
                require_user_verification=require_uv,
            )
        except MALFORMED as exc:
            raise self._refused(exc) from None
        new_count = verified.new_sign_count
        # Forward only; an authenticator that does not count (always 0) is accepted while it never did.
        moved_on = Passkey.sign_count < new_count if new_count > 0 else Passkey.sign_count == 0
        result = db.session.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id, moved_on)
            .values(sign_count=new_count, last_used_at=self.clock.now())
        )
        if result.rowcount != 1:
            db.session.rollback()
            # A valid signature with a counter that did not move forward: a cloned authenticator,
            # or a replay that got past the challenge. Refused and written down for the admins.
            self.audit.record("passkey.counter_regressed", actor=f"user:{owner.username}",
                              target=f"user:{owner.username}", outcome="failure",
                              details={"passkey": passkey.id, "stored": passkey.sign_count, "sent": new_count},
                              commit=True)
            raise PasskeyRejected("This passkey's signature counter went backwards, as happens when an "
                                  "authenticator was copied; it is refused. Use another factor and tell an "
                                  "administrator.", "counter")
        db.session.commit()
        return Assertion(owner, passkey, bool(verified.user_verified))

    # -- changes by the owner or an admin ---------------------------------------

    def remove(self, user: User, passkey_id: int, *, actor: str, still_has_factor: bool = True) -> None:
        """Remove one of `user`'s passkeys (the caller has checked a current password or factor);
        `still_has_factor` False refuses removing the last one (policy requires a second factor)."""
        passkey = db.session.scalar(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id))
        if passkey is None:
            raise PasskeyNotFound()
        if not still_has_factor and self.count_for(user) <= 1:
            raise LastFactorRequired()
        db.session.execute(delete(Passkey).where(Passkey.id == passkey.id))
        name = passkey.name
        self.audit.record("passkey.remove", actor=actor, target=f"user:{user.username}",
                          details={"passkey": passkey.id, "name": name})
        db.session.commit()
        self._factor_changed(user, "removed", name)

    def reset(self, user: User, *, actor: str) -> int:
        """An admin's reset: every passkey of the user gone. Answers how many there were."""
        result = db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))
        self.audit.record("passkey.reset", actor=actor, target=f"user:{user.username}",
                          details={"removed": result.rowcount})
        db.session.commit()
        if result.rowcount:
            self._factor_changed(user, "removed", "")
        return result.rowcount

    # -- internals ----------------------------------------------------------------

    def _throttled(self, kind: str, account: str, address: str, user: User | None,
                   attempt: Callable[[], T]) -> T:
        target = f"user:{user.username}" if user is not None else "passkey:passwordless"
        try:
            counted = self.throttle.begin(kind, account, (address or "-")[:45])
        except TooManyAttempts as exc:
            self.audit.record("passkey.throttled", actor=target, target=target, outcome="failure",
                              details={"retry_after": exc.retry_after}, commit=True)
            raise
        try:
            result = attempt()
        except PasskeyError as exc:
            self.throttle.failed(counted)
            self.audit.record("passkey.failed", actor=target, target=target, outcome="failure",
                              details={"reason": getattr(exc, "reason", exc.error)}, commit=True)
            raise
        self.throttle.succeeded(counted)
        return result

    @staticmethod
    def _parse(credential: str | dict) -> dict:
        """The credential as JSON (what the browser's PublicKeyCredential.toJSON() gives), or refused."""
        if isinstance(credential, dict):
            parsed = credential
        else:
            if not credential or len(credential) > MAX_CREDENTIAL_JSON:
                raise PasskeyRejected("No passkey answer was received; try again (this needs JavaScript).", "missing")
            try:
                parsed = json.loads(credential)
            except (ValueError, RecursionError):
                parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("response"), dict):
            raise PasskeyRejected("The passkey answer is malformed; try again.", "malformed")
        return parsed

    def _check_client_and_rp(self, parsed: dict, ceremony: str, *, require_uv: bool) -> None:
        """Name a wrong origin, rp_id or missing user verification plainly (parsed by the library),
        before its full check, which checks them all again."""
        response = parsed["response"]
        malformed = PasskeyRejected("The passkey answer is malformed; try again.", "malformed")
        try:
            client = parse_client_data_json(webauthn.base64url_to_bytes(response.get("clientDataJSON", "")))
            if ceremony == "webauthn.create":
                auth_data = parse_attestation_object(
                    webauthn.base64url_to_bytes(response.get("attestationObject", ""))).auth_data
            else:
                auth_data = parse_authenticator_data(webauthn.base64url_to_bytes(response.get("authenticatorData", "")))
        except MALFORMED:
            raise malformed from None
        if client.type != ceremony:
            raise PasskeyRejected("The passkey answer is for another kind of request; try again.", "type")
        if client.origin != self.origin:
            raise PasskeyRejected(
                f"This passkey answer was made on another site ({str(client.origin)[:100]}), not on {self.origin}: "
                "open this server at its own address and try again.", "origin")
        if auth_data.rp_id_hash != hashlib.sha256(self.rp_id.encode()).digest():
            raise PasskeyRejected(f"This passkey belongs to another site, not to {self.rp_id}.", "rp_id")
        if require_uv and not auth_data.flags.uv:
            raise PasskeyRejected("This sign-in needs the authenticator to verify you (fingerprint, face or PIN); "
                                  "try again and confirm on the device.", "user_verification")

    @staticmethod
    def _refused(exc: Exception) -> PasskeyRejected:
        return PasskeyRejected("The passkey answer could not be verified; try again.", "invalid")

    @staticmethod
    def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
        known = {t.value: t for t in AuthenticatorTransport}
        return PublicKeyCredentialDescriptor(
            id=webauthn.base64url_to_bytes(passkey.credential_id),
            transports=[known[t] for t in passkey.transports or () if t in known] or None,
        )


def binding_of_browser(handle: str) -> str:
    """A passwordless attempt's challenge is bound to a random handle in the browser's cookie."""
    return f"browser:{token_hash(handle)}"
