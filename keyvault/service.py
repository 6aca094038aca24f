"""KeyService: mint, rotate, revoke and verify API keys.

Verification is one indexed read (the key and its owner, by `key_id`) plus one
HMAC; nothing is cached between requests, so a revocation is seen by every
worker on its next request. The hot path only writes `last_used_*`, and at
most once a minute per key.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from authserver.accounts.models import SsoSession, User
from authserver.audit.models import AuditEvent
from authserver.audit.service import AuditLog
from authserver.clock import Clock
from authserver.crypto import keyed_hash, same
from authserver.errors import DomainError
from authserver.extensions import db
from authserver.hotpath import read_one
from authserver.identity import Identity, UserProfile, profile_columns, profile_from
from authserver.throttle import Bucket, Throttle, TooManyAttempts

from . import keyformat
from .models import ApiKey

ADMIN_SCOPE = "admin"
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_GRACE_SECONDS = 30 * 24 * 3600
MAX_EXPIRY_DAYS = 3650
MAX_CIDRS = 32
MAX_NAME_LENGTH = 100


INVALID_KEY = "The API key is not valid, or not usable from here."


class KeyVaultError(DomainError):
    """Base for key-vault failures; the message is safe to show."""


class InvalidKey(KeyVaultError):
    """A presented key is not accepted: revoked, expired, out of range or wrong, deliberately
    one answer to the caller; `reason` is for the audit log."""

    status = 401
    error = "invalid_key"
    reason = "invalid"

    def __init__(self):
        super().__init__(INVALID_KEY, headers={"WWW-Authenticate": 'Bearer realm="authserver"'})


class KeyMalformed(InvalidKey):
    reason = "malformed"


class KeyUnknown(InvalidKey):
    reason = "unknown"


class KeySecretMismatch(InvalidKey):
    reason = "wrong_secret"


class KeyRevoked(InvalidKey):
    reason = "revoked"


class KeyExpired(InvalidKey):
    reason = "expired"


class KeyAddressDenied(InvalidKey):
    reason = "address_not_allowed"


class KeyOwnerDisabled(InvalidKey):
    reason = "owner_disabled"


class KeyLoginThrottled(TooManyAttempts):
    """Failed keys from this address past its limit (`key:address`): whoever catches the
    throttle's refusals catches this one too (forward-auth answers it 401, not 429)."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after, "failed API-key attempts from this address")


class KeyNotFound(KeyVaultError):
    """No such key, or not one the caller may see (deliberately the same)."""

    status = 404
    error = "not_found"


class KeyForbidden(KeyVaultError):
    status = 403
    error = "forbidden"


class InvalidKeyRequest(KeyVaultError):
    pass


class KeyConflict(KeyVaultError):
    status = 409
    error = "conflict"


@dataclass(frozen=True)
class MintedKey:
    """A new secret, handed to its owner this once and never stored."""

    key: ApiKey
    secret: str

    @property
    def key_id(self) -> str:
        return self.key.key_id


@dataclass(frozen=True)
class VerifiedKey:
    """A key that passed every check: its row (owner columns prefixed `owner_`) and effective scopes."""

    record: Any  # the hot read of `_VERIFY`: a frozen dataclass of its columns
    scopes: frozenset[str]
    # When the secret that was presented stops working: the end of a rotation's grace for the
    # previous secret, None for the current one.
    valid_until: datetime | None = None

    @property
    def key_id(self) -> str:
        return self.record.key_id

    @functools.cached_property
    def owner(self) -> UserProfile:
        """The owner's profile, from the row already read: read-only, no ORM session."""
        return profile_from(self.record, _OWNER)

    @functools.cached_property
    def user(self) -> User:
        """The owner as a persistent User (loaded by primary key: only writes need it)."""
        return db.session.get(User, self.record.user_id)


# Verification reads the key and its owner with one prebuilt Core statement: the ORM's
# per-row bookkeeping would cost more than the indexed read itself (see docs/benchmarks.md).
_KEYS = ApiKey.__table__
_USERS = User.__table__
_OWNER = "owner_"
# The columns the checks, the last-use note and introspection read; not the key's name or who
# made or revoked it (the key pages load the whole row).
_CHECKED = ("id", "key_id", "user_id", "scopes", "secret_hmac", "previous_secret_hmac", "previous_valid_until",
            "allowed_cidrs", "expires_at", "created_at", "rotated_at", "last_used_at", "revoked_at")
_VERIFY = (
    select(*(_KEYS.c[name] for name in _CHECKED), *profile_columns(_USERS, _OWNER))
    .join_from(_KEYS, _USERS, _USERS.c.id == _KEYS.c.user_id)
    .where(_KEYS.c.key_id == bindparam("key_id"))
)


@functools.lru_cache(maxsize=4096)
def _networks(cidrs: tuple[str, ...]) -> tuple:
    # Parsing only: the result depends on the stored strings alone, so caching it outlives nothing.
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def address_allowed(ip: str | None, cidrs: Sequence[str]) -> bool:
    """Is `ip` inside one of the networks? IPv4-mapped IPv6 addresses count as IPv4."""
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(cidrs)))


def parse_cidrs(texts: Iterable[str]) -> list[str]:
    """Normalised CIDR strings (host bits cleared), or InvalidKeyRequest naming the bad one."""
    networks: list[str] = []
    for text in texts:
        text = text.strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidKeyRequest(
                f'"{text[:60]}" is not an address range; write e.g. 192.0.2.0/24, 2001:db8::/32 or 198.51.100.7.'
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    if len(networks) > MAX_CIDRS:
        raise InvalidKeyRequest(f"A key allows at most {MAX_CIDRS} address ranges.")
    return networks


def can_manage_keys(identity: Identity) -> bool:
    """A full login may manage its keys; a scoped credential (a key, a token) only with `admin`.

    Otherwise a leaked narrow key could mint itself lasting replacements.
    """
    return identity.scopes is None or identity.has_scope(ADMIN_SCOPE)


def acts_as_admin(identity: Identity) -> bool:
    return identity.is_admin


class KeyService:
    """API keys: the lifecycle (mint, rotate, revoke), verification and introspection."""

    def __init__(self, pepper: bytes, clock: Clock, audit: AuditLog, throttle: Throttle,
                 scope_catalogue: Sequence[str]):
        self.pepper = pepper
        self.clock = clock
        self.audit = audit
        self.throttle = throttle
        self._mint_listeners: list[Callable[[ApiKey], object]] = []
        self.catalogue = tuple(scope_catalogue)

    # --- scopes -------------------------------------------------------------

    def scopes_for(self, user: User) -> tuple[str, ...]:
        """The scopes `user`'s keys may carry: the catalogue, `admin` only for admins."""
        return tuple(s for s in self.catalogue if s != ADMIN_SCOPE or user.is_admin)

    def effective_scopes(self, scopes: Sequence[str], owner_is_admin: bool) -> frozenset[str]:
        """The key's scopes that its owner still holds (a demoted admin's keys lose `admin`)."""
        return frozenset(s for s in scopes or () if s in self.catalogue and (s != ADMIN_SCOPE or owner_is_admin))

    # --- verification (the hot path) ------------------------------------------

    @staticmethod
    def is_key_login(username: str) -> bool:
        """Does a login's username claim to be a key id? Then the password is its secret."""
        return keyformat.looks_like_key_id(username)

    def verify(self, key_id: str, secret: str, *, ip: str | None) -> VerifiedKey:
        """The key behind this pair, or an InvalidKey subclass. No throttling, no audit, no writes."""
        try:
            # Format and checksum first: typos and junk never reach the database.
            keyformat.check_pair(key_id, secret)
        except keyformat.MalformedKey:
            raise KeyMalformed() from None
        key = read_one(_VERIFY, {"key_id": key_id})
        digest = keyed_hash(self.pepper, secret)
        if key is None:
            raise KeyUnknown()
        now = self.clock.now()
        matched = self._secret_matches(key, digest, now)
        if not matched:
            raise KeySecretMismatch()
        if key.revoked_at is not None:
            raise KeyRevoked()
        if key.expires_at is not None and now >= key.expires_at:
            raise KeyExpired()
        if key.owner_is_disabled:
            raise KeyOwnerDisabled()
        if key.allowed_cidrs and not address_allowed(ip, key.allowed_cidrs):
            raise KeyAddressDenied()
        valid_until = None if matched == "current" else key.previous_valid_until
        return VerifiedKey(key, self.effective_scopes(key.scopes, key.owner_is_admin), valid_until)

    @staticmethod
    def _secret_matches(key, digest: str, now: datetime) -> str | None:
        """"current", "previous" (a rotation's grace), or None."""
        # compare_digest: the time taken does not depend on how much of the HMAC matched.
        current = same(digest, key.secret_hmac)
        previous = (
            key.previous_secret_hmac is not None
            and key.previous_valid_until is not None
            and now < key.previous_valid_until
            and same(digest, key.previous_secret_hmac)
        )
        return "current" if current else ("previous" if previous else None)

    def authenticate(self, key_id: str, secret: str, *, ip: str) -> VerifiedKey:
        """A key login: failures counted per address and audited (never the secret), last use noted.

        A valid key is never refused, whatever other keys' guesses from its address did: a
        secret of 220 random bits is not guessed, and a shared address (a NAT, a proxy) must
        not lock its honest users out. Failures past the address's limit are answered 429.
        """
        try:
            verified = self.verify(key_id, secret, ip=ip)
        except InvalidKey as exc:
            retry = self._guess_failed(Bucket("key:address", ip or "-"), key_id, exc)
            if retry is not None:
                raise KeyLoginThrottled(retry) from None
            raise
        self._note_use(verified.record, ip)
        return verified

    def _guess_failed(self, bucket: Bucket, key_id: str, exc: InvalidKey) -> int | None:
        """Count and audit a failed key; the seconds to wait when the address is over its limit."""
        if self.throttle.fail(bucket):
            self._record_failure(key_id, exc)
            return None
        retry = self.throttle.retry_after(bucket)
        self.audit.record(
            "key.throttled",
            actor="anonymous",
            target=f"key:{key_id}" if keyformat.is_key_id(key_id) else "",
            outcome="failure",
            details={"reason": exc.reason, "retry_after": retry},
            commit=True,
        )
        return retry

    def authenticate_token(self, token: str, *, ip: str) -> VerifiedKey:
        key_id, _, secret = token.partition(":")
        return self.authenticate(key_id, secret, ip=ip)

    def introspect(self, token: str, *, caller_address: str) -> dict | None:
        """RFC 7662 fields for a valid `pkid-…:secret`, else None (answer `{"active": false}`).

        A guess through introspection counts like one presented by a caller: counted per
        address (the introspecting service's; past its limit TooManyAttempts) and audited. The
        caller is a service, not the key's holder: its address says nothing about the
        holder's, so a key limited to address ranges is not active here.
        """
        if not isinstance(token, str):
            return None
        key_id, _, secret = token.partition(":")
        try:
            verified = self.verify(key_id, secret, ip=None)
        except InvalidKey as exc:
            retry = self._guess_failed(Bucket("key:address", caller_address or "-"), key_id, exc)
            if retry is not None:
                raise TooManyAttempts(retry) from None
            return None
        key = verified.record
        answer = {
            "active": True,
            "scope": " ".join(s for s in key.scopes if s in verified.scopes),
            "client_id": None,
            "username": key.owner_username,
            "sub": key.owner_sub,
            "groups": list(key.owner_groups or []),
            "token_type": "api_key",
            "iat": int((key.rotated_at or key.created_at).timestamp()),
            "key_id": key.key_id,
        }
        if key.expires_at is not None:
            answer["exp"] = int(key.expires_at.timestamp())
        return answer

    def _note_use(self, key, ip: str) -> None:
        now = self.clock.now()
        if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
            return
        # Conditional, so many workers seeing the same stale time write it once; the one that
        # does also audits the use (every authentication event is in the audit log: a key's
        # once a minute, with its last use, rather than a row per request).
        touched = db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION))
            .values(last_used_at=now, last_used_ip=(ip or "")[:64])
        ).rowcount
        if touched:
            self.audit.record("key.use", actor=f"key:{key.key_id}", target=f"user:{key.owner_username}")
        db.session.commit()

    def _record_failure(self, key_id: str, exc: InvalidKey) -> None:
        # A malformed "key id" may be a pasted secret: only a well-formed id is written down.
        target = f"key:{key_id}" if keyformat.is_key_id(key_id) else ""
        self.audit.record(
            "key.use", actor="anonymous", target=target, outcome="failure", details={"reason": exc.reason}, commit=True
        )

    # --- lifecycle ------------------------------------------------------------

    def find(self, key_id: str) -> ApiKey | None:
        if not keyformat.is_key_id(key_id):
            return None
        return db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))

    def list_keys(self, owner: User | None = None, *, limit: int | None = None) -> list[ApiKey]:
        """Keys of one owner, or every key, newest first; at most `limit`."""
        stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        if owner is not None:
            stmt = stmt.where(ApiKey.user_id == owner.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(db.session.scalars(stmt))

    def history(self, key_id: str, limit: int = 200) -> list[AuditEvent]:
        return self.audit.query(target=f"key:{key_id}", limit=limit)

    def on_mint(self, listener: Callable[[ApiKey], object]) -> None:
        """Call `listener(key)` after a key was minted or given a new secret (committed); never with its secret."""
        self._mint_listeners.append(listener)

    def mint(
        self,
        owner: User,
        *,
        name: str,
        scopes: Sequence[str] | None = None,
        expires_in: timedelta | None = None,
        cidrs: Iterable[str] = (),
        actor: str,
        scope_limit: frozenset[str] | None = None,
        admin_action: bool = False,
    ) -> MintedKey:
        """A new key for `owner`. `scope_limit`: the scopes of the credential asking (never exceeded)."""
        name = self._check_name(name)
        granted = self._check_scopes(owner, scopes, scope_limit)
        if expires_in is not None and not timedelta(0) < expires_in <= timedelta(days=MAX_EXPIRY_DAYS):
            raise InvalidKeyRequest(f"A key expires between 1 and {MAX_EXPIRY_DAYS} days from now.")
        networks = parse_cidrs(cidrs)
        if owner.is_disabled:
            raise InvalidKeyRequest(f'The user "{owner.username}" is disabled.')
        now = self.clock.now()
        secret = keyformat.new_secret()
        key = ApiKey(
            key_id=keyformat.new_key_id(now.date()),
            user_id=owner.id,
            name=name,
            scopes=list(granted),
            secret_hmac=keyed_hash(self.pepper, secret),
            allowed_cidrs=networks,
            expires_at=now + expires_in if expires_in is not None else None,
            created_at=now,
            created_by=actor[:200],
            last_used_ip="",
            revoked_by="",
        )
        key.user = owner
        db.session.add(key)
        db.session.flush()
        self.audit.record(
            "admin.key.mint" if admin_action else "key.mint",
            actor=actor,
            target=f"key:{key.key_id}",
            details={
                "owner": owner.username,
                "name": name,
                "scopes": list(granted),
                "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                "cidrs": networks,
            },
        )
        db.session.commit()
        for listener in self._mint_listeners:
            listener(key)
        return MintedKey(key, secret)

    def rotate(self, key: ApiKey, *, grace_seconds: int, actor: str, admin_action: bool = False) -> MintedKey:
        """Same key id, new secret (returned once); the old one stays valid for `grace_seconds` (0: not at all)."""
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidKeyRequest(f"The grace period is between 0 and {MAX_GRACE_SECONDS} seconds.")
        now = self.clock.now()
        if key.revoked_at is not None:
            raise InvalidKeyRequest("This key is revoked; mint a new one instead.")
        if key.expires_at is not None and now >= key.expires_at:
            raise InvalidKeyRequest("This key has expired; mint a new one instead.")
        secret = keyformat.new_secret()
        old_hmac = key.secret_hmac
        grace_until = now + timedelta(seconds=grace_seconds) if grace_seconds else None
        # Conditional on the hash we read: of two simultaneous rotations only one wins.
        result = db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id, ApiKey.secret_hmac == old_hmac, ApiKey.revoked_at.is_(None))
            .values(
                secret_hmac=keyed_hash(self.pepper, secret),
                previous_secret_hmac=old_hmac if grace_until else None,
                previous_valid_until=grace_until,
                rotated_at=now,
            )
        )
        if result.rowcount != 1:
            db.session.rollback()
            raise KeyConflict("This key was changed at the same moment; reload and try again.")
        # Sessions opened by logging in with the old secret end when it does: now, or at the grace's end.
        opened = SsoSession.key_id == key.key_id, SsoSession.revoked_at.is_(None)
        if grace_until is None:
            db.session.execute(update(SsoSession).where(*opened).values(revoked_at=now))
        else:
            db.session.execute(update(SsoSession).where(*opened, SsoSession.expires_at > grace_until)
                               .values(expires_at=grace_until))
        self.audit.record(
            "admin.key.rotate" if admin_action else "key.rotate",
            actor=actor,
            target=f"key:{key.key_id}",
            details={"owner": key.user.username, "grace_seconds": grace_seconds},
        )
        db.session.commit()
        db.session.refresh(key)
        for listener in self._mint_listeners:
            listener(key)  # a new secret is as good as a new key: its owner is told
        return MintedKey(key, secret)

    def revoke(self, key: ApiKey, *, actor: str, admin_action: bool = False) -> bool:
        """Revoke at once, with the sessions opened by logging in with it. False if it already was."""
        now = self.clock.now()
        result = db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor[:200], previous_secret_hmac=None, previous_valid_until=None)
        )
        if result.rowcount != 1:
            db.session.rollback()
            return False
        db.session.execute(
            update(SsoSession)
            .where(SsoSession.key_id == key.key_id, SsoSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        self.audit.record(
            "admin.key.revoke" if admin_action else "key.revoke",
            actor=actor,
            target=f"key:{key.key_id}",
            details={"owner": key.user.username},
        )
        db.session.commit()
        db.session.refresh(key)
        return True

    def bind_session(self, session: SsoSession, verified: VerifiedKey) -> None:
        """A session opened by logging in with a key ends no later than the secret it was opened with:
        the key's expiry, or, for the old secret during a rotation's grace, the grace's end
        (revoke() and rotate() end such sessions too)."""
        ends = [t for t in (verified.record.expires_at, verified.valid_until) if t is not None]
        if ends and min(ends) < session.expires_at:
            session.expires_at = min(ends)
            db.session.commit()

    # --- the same, as an authenticated caller (API and web pages) -------------------

    def owner_for(self, identity: Identity, username: str | None) -> User:
        """Whose keys the caller means: their own, or (admins only) `username`'s."""
        if not can_manage_keys(identity):
            raise KeyForbidden("Managing keys needs a full login, or a credential with the admin scope.")
        if not username or username.casefold() == identity.user.username_key:
            return identity.user
        if not acts_as_admin(identity):
            raise KeyForbidden("Only administrators manage other users' keys.")
        user = db.session.scalar(select(User).where(User.username_key == username.strip().casefold()))
        if user is None:
            raise KeyNotFound(f'There is no user "{username[:150]}".')
        return user

    def manageable(self, identity: Identity, key_id: str) -> ApiKey:
        """The key if the caller owns it or is an admin; KeyNotFound otherwise (no existence leak)."""
        if not can_manage_keys(identity):
            raise KeyForbidden("Managing keys needs a full login, or a credential with the admin scope.")
        key = self.find(key_id)
        if key is None or (key.user_id != identity.user.id and not acts_as_admin(identity)):
            raise KeyNotFound("There is no such key; check the key id.")
        return key

    def mint_as(self, identity: Identity, *, username: str | None = None, **options) -> MintedKey:
        owner = self.owner_for(identity, username)
        # An admin credential may grant any scope; any other never more than it holds itself.
        limit = None if acts_as_admin(identity) else identity.scopes
        return self.mint(
            owner, actor=identity.actor, scope_limit=limit, admin_action=owner.id != identity.user.id, **options
        )

    def rotate_as(self, identity: Identity, key_id: str, *, grace_seconds: int) -> MintedKey:
        key = self.manageable(identity, key_id)
        return self.rotate(
            key, grace_seconds=grace_seconds, actor=identity.actor, admin_action=key.user_id != identity.user.id
        )

    def revoke_as(self, identity: Identity, key_id: str) -> ApiKey:
        key = self.manageable(identity, key_id)
        self.revoke(key, actor=identity.actor, admin_action=key.user_id != identity.user.id)
        return key

    def list_as(
        self, identity: Identity, username: str | None = None, *, every_user: bool = False, limit: int | None = None
    ) -> list[ApiKey]:
        if every_user:
            if not (can_manage_keys(identity) and acts_as_admin(identity)):
                raise KeyForbidden("Only administrators list every user's keys.")
            return self.list_keys(limit=limit)
        return self.list_keys(self.owner_for(identity, username), limit=limit)

    # --- input checks ---------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> str:
        name = (name or "").strip()
        if not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable():
            raise InvalidKeyRequest(f"A key's name has 1 to {MAX_NAME_LENGTH} printable characters.")
        return name

    def _check_scopes(self, owner: User, scopes: Sequence[str] | None, limit: frozenset[str] | None) -> list[str]:
        allowed = self.scopes_for(owner)
        if scopes is None:
            # Default: everything the owner may hold except `admin`, which must be asked for.
            granted = [s for s in allowed if s != ADMIN_SCOPE and (limit is None or s in limit)]
        else:
            granted = list(dict.fromkeys(s.strip() for s in scopes if s.strip()))
            for scope in granted:
                if scope not in self.catalogue:
                    raise InvalidKeyRequest(f'Unknown scope "{scope[:64]}"; choose from: {" ".join(self.catalogue)}.')
                if scope not in allowed:
                    raise InvalidKeyRequest(f'The scope "{scope}" is for administrators only.')
                if limit is not None and scope not in limit:
                    raise InvalidKeyRequest(f'These credentials lack the scope "{scope}", so they cannot grant it.')
        if not granted:
            raise InvalidKeyRequest(f"A key needs at least one scope; choose from: {' '.join(allowed)}.")
        return granted
