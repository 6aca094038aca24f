"""Throttling of credential checks: shared by every worker and host, consumed before the check.

Counters live where every server process sees them and survive a restart: in Redis when
AUTHSERVER_REDIS_URL is set (the `limits` library's moving window, atomic in Redis), else
in the database (`throttle_counters`, one row per bucket, key and window, incremented with
one atomic upsert). The per-process memory store exists for unit tests only
(`Throttle.in_memory`): with several workers it would multiply every limit by their number.

A bucket counts *attempts* that are consumed before the credential is checked (`consume`):
of 40 parallel attempts no more than the limit are ever checked. Or it counts *failures*
(`fail`) for credentials whose valid form must never be refused (API keys, client
secrets): a valid key or client passes whatever its address did; only the failures are
refused with 429 once their bucket is full. docs/security.md has the policy with numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Integer, String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .errors import DomainError
from .extensions import db

log = logging.getLogger("authserver.throttle")

# name: (limit, window in seconds). See docs/security.md, "Throttling".
DEFAULT_RULES: dict[str, tuple[int, int]] = {
    # Passwords: attempts per account from one address, per address, and failures per account.
    "password:pair": (5, 300),
    "password:address": (50, 300),
    "password:account": (10, 300),
    # Second factor (TOTP or recovery code): the same three, tighter.
    "totp:pair": (5, 300),
    "totp:address": (30, 300),
    "totp:account": (5, 300),
    # Passwordless passkey sign-ins (no account is known before the check): per address; the
    # "account" is every passwordless attempt together. A passkey as a second factor counts in totp:*.
    "passkey:pair": (10, 300),
    "passkey:address": (30, 300),
    "passkey:account": (300, 300),
    "passkey-start:address": (30, 60),  # passwordless challenges handed out (rows written unauthenticated)
    # Failures only: a valid key or client secret always passes.
    "key:address": (30, 60),
    "client:address": (60, 60),
    "broker:address": (30, 60),  # unknown broker transaction handles
    "broker-start:address": (120, 60),  # broker transactions started (rows written unauthenticated)
    "device-start:address": (20, 60),  # device authorizations started (rows written by public clients)
    "par:address": (60, 60),  # pushed authorization requests (rows written by public clients)
    # User codes entered at /device (RFC 8628 §5.1: the short code must not be guessed),
    # counted before the check, per browser session and per address.
    "device:session": (10, 300),
    "device:address": (30, 300),
    # Password-reset mails asked for, counted before the lookup: per client address, and per email
    # address (one address, one account; an unknown address counts the same).
    "reset:address": (20, 3600),
    "reset:account": (3, 3600),
    # Verification links mailed for one account (a changed address, the account page's button):
    # nobody's mailbox is flooded through an account whose address they typed in.
    "verify:account": (5, 3600),
}


class TooManyAttempts(DomainError):
    """Refused until the window moves on; `retry_after` is in whole seconds."""

    status = 429
    error = "too_many_requests"

    def __init__(self, retry_after: int, what: str = "attempts"):
        retry_after = max(1, retry_after)
        super().__init__(f"Too many {what}; try again in {retry_after} seconds.",
                         headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ThrottleUnavailable(DomainError):
    """The shared store of counters cannot be reached: refused, never checked unthrottled."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self):
        super().__init__("The rate-limit store is unreachable; try again in a few seconds.",
                         headers={"Retry-After": "5"})


@dataclass(frozen=True)
class Bucket:
    name: str
    key: str


@dataclass(frozen=True)
class Attempt:
    pair: Bucket  # the account from this address
    account: Bucket  # the account's failures from everywhere


class ThrottleCounter(db.Model):
    """Attempts or failures of one bucket and key in one fixed window (the database store)."""

    __tablename__ = "throttle_counters"

    bucket: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class DatabaseCounters:
    """Sliding-window counts from two fixed windows: this one's count plus the previous one's,
    weighted by how much of it still overlaps the sliding window (an estimate that never
    lets more than the limit through in any window of the rule's length, give or take the
    weighting). Each increment is one atomic upsert that answers the new count."""

    def __init__(self, now: Callable[[], float]):
        self.now = now
        self._hits = 0

    def _upsert(self, dialect_name: str):
        table = ThrottleCounter.__table__
        insert = (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c.bucket, table.c.key, table.c.window_start],
            set_={"count": table.c.count + 1},
        ).returning(table.c.count)

    def hit(self, bucket: Bucket, limit: int, period: int) -> tuple[bool, int, float]:
        """Count one; (still within the limit, seconds until it would be, the count now)."""
        now = self.now()
        start = int(now // period * period)
        table = ThrottleCounter.__table__
        with db.engine.begin() as conn:
            current = conn.execute(
                self._upsert(conn.dialect.name),
                {"bucket": bucket.name, "key": bucket.key, "window_start": start, "count": 1},
            ).scalar_one()
            previous = (
                conn.execute(
                    select(table.c.count).where(
                        table.c.bucket == bucket.name, table.c.key == bucket.key, table.c.window_start == start - period
                    )
                ).scalar()
                or 0
            )
            ok, retry = self._verdict(current, previous, now, start, limit, period)
            if not ok:
                # A refused attempt is not checked, so it does not count (as with `limits`' moving
                # window): Retry-After stays true however often the caller knocks meanwhile. Undone
                # in the same transaction, which holds the row: parallel attempts still queue.
                conn.execute(
                    update(table)
                    .where(table.c.bucket == bucket.name, table.c.key == bucket.key, table.c.window_start == start)
                    .values(count=table.c.count - 1)
                )
            self._hits += 1
            if self._hits % 200 == 0:  # old windows are of no use: sweep now and then
                conn.execute(delete(table).where(table.c.window_start < int(now) - 2 * 86400))
        return ok, retry, self._estimate(current, previous, now, start, period)

    def peek(self, bucket: Bucket, limit: int, period: int) -> tuple[bool, int]:
        """(one more attempt would fit, seconds until it would) without counting."""
        now = self.now()
        start = int(now // period * period)
        table = ThrottleCounter.__table__
        with db.engine.connect() as conn:
            rows = dict(
                conn.execute(
                    select(table.c.window_start, table.c.count).where(
                        table.c.bucket == bucket.name,
                        table.c.key == bucket.key,
                        table.c.window_start.in_([start, start - period]),
                    )
                ).all()
            )
        current, previous = rows.get(start, 0), rows.get(start - period, 0)
        # Would one more attempt fit? (As `limits`' test() answers.)
        return self._verdict(current + 1, previous, now, start, limit, period)

    def clear(self, bucket: Bucket) -> None:
        table = ThrottleCounter.__table__
        with db.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.bucket == bucket.name, table.c.key == bucket.key))

    @staticmethod
    def _estimate(current: int, previous: int, now: float, start: int, period: int) -> float:
        overlap = 1 - (now - start) / period
        return current + previous * overlap

    def _verdict(self, current, previous, now, start, limit, period) -> tuple[bool, int]:
        if self._estimate(current, previous, now, start, period) <= limit:
            return True, 0
        # When does one more attempt fit? `current` counts it already.
        if current <= limit:
            # Later in this window, as the previous window's weight shrinks.
            needed = (limit - current) / previous  # overlap at which it fits
            return False, max(1, math.ceil(start + period * (1 - needed) - now))
        # Not in this window: in the next, where it counts one and this window's stored count
        # (`current - 1`: refused attempts are not kept) weighs in as the previous one's.
        stored = current - 1
        into_next = 0.0 if stored <= limit - 1 else 1 - (limit - 1) / stored
        return False, max(1, math.ceil(start + period * (1 + into_next) - now))


class LimitsCounters:
    """The `limits` library's moving window: in Redis (shared, atomic), or in memory (one process).
    The store's own errors (Redis down or timing out) become ThrottleUnavailable."""

    def __init__(self, url: str):
        self.storage = storage_from_string(url)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._items: dict[tuple[int, int], object] = {}
        # What the store raises when it is unreachable; the memory store has no outage.
        self._outages = () if url.startswith("memory://") else self.storage.base_exceptions

    def _item(self, limit: int, period: int):
        key = (limit, period)
        if key not in self._items:
            self._items[key] = parse(f"{limit}/{period} second")
        return self._items[key]

    def hit(self, bucket: Bucket, limit: int, period: int) -> tuple[bool, int, float]:
        item = self._item(limit, period)
        with self._reachable():
            ok = self.limiter.hit(item, bucket.name, bucket.key)
            used = limit - self.limiter.get_window_stats(item, bucket.name, bucket.key).remaining
            return (True, 0, used) if ok else (False, self._retry(item, bucket), used)

    def peek(self, bucket: Bucket, limit: int, period: int) -> tuple[bool, int]:
        item = self._item(limit, period)
        with self._reachable():
            ok = self.limiter.test(item, bucket.name, bucket.key)
            return ok, (0 if ok else self._retry(item, bucket))

    def clear(self, bucket: Bucket) -> None:
        with self._reachable():
            for item in self._items.values():
                self.limiter.clear(item, bucket.name, bucket.key)

    def _retry(self, item, bucket: Bucket) -> int:
        stats = self.limiter.get_window_stats(item, bucket.name, bucket.key)
        return int(stats.reset_time - time.time()) + 1

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except self._outages as exc:
            log.error("rate-limit store unavailable", extra={"cause": type(exc).__name__})
            raise ThrottleUnavailable() from exc


class Throttle:
    def __init__(self, counters, rules: dict[str, tuple[int, int]] | None = None):
        self.counters = counters
        self.rules = {**DEFAULT_RULES, **(rules or {})}

    @classmethod
    def for_settings(cls, redis_url: str | None, now: Callable[[], float]) -> Throttle:
        if redis_url:
            return cls(LimitsCounters(redis_url))
        return cls(DatabaseCounters(now))

    @classmethod
    def in_memory(cls, rules: dict[str, tuple[int, int]] | None = None) -> Throttle:
        return cls(LimitsCounters("memory://"), rules)

    def consume(self, *buckets: Bucket) -> None:
        """Count one attempt in each bucket, before the credential is checked; TooManyAttempts
        when any of them is over its limit (the attempt is not checked at all)."""
        verdicts = [self.counters.hit(b, *self.rules[b.name]) for b in buckets]  # every bucket counts
        refused = [retry for ok, retry, _ in verdicts if not ok]
        if refused:
            raise TooManyAttempts(max(refused))

    def fail(self, *buckets: Bucket) -> bool:
        """Count one failure in each bucket; False when any of them is now over its limit."""
        verdicts = [self.counters.hit(b, *self.rules[b.name])[0] for b in buckets]  # every bucket counts
        return all(verdicts)

    def retry_after(self, bucket: Bucket) -> int:
        ok, retry = self.counters.peek(bucket, *self.rules[bucket.name])
        return 1 if ok else retry

    # -- a secret that belongs to an account (a password, a second factor) ----------

    def begin(self, kind: str, account: str, address: str) -> Attempt:
        """One try of an account's secret from an address, counted before the secret is checked.

        Refused (TooManyAttempts) when this address used up its tries for this account
        (`kind:pair`) or all its tries (`kind:address`), or when the account is under attack
        (its failures from everywhere, `kind:account`, are over the limit) and this address
        is one of those that failed against it. An address with no recent failure against the
        account still gets its try: an attacker elsewhere cannot lock the user out, only slow
        down the guessing to one try per fresh address.
        """
        attempt = Attempt(Bucket(f"{kind}:pair", f"{account}|{address}"), Bucket(f"{kind}:account", account))
        calm, retry = self.counters.peek(attempt.account, *self.rules[attempt.account.name])
        # Counted first, atomically: of parallel attempts from a fresh address at an account
        # under attack, only the one that counted first is checked.
        pair_ok, pair_retry, tried = self.counters.hit(attempt.pair, *self.rules[attempt.pair.name])
        address_ok, address_retry, _ = self.counters.hit(
            Bucket(f"{kind}:address", address), *self.rules[f"{kind}:address"]
        )
        if not calm and tried > 1:
            raise TooManyAttempts(retry)
        if not (pair_ok and address_ok):
            raise TooManyAttempts(max(pair_retry, address_retry))
        return attempt

    def failed(self, attempt: Attempt) -> None:
        self.fail(attempt.account)

    def succeeded(self, attempt: Attempt) -> None:
        """The right secret: this address's tries for the account start afresh."""
        self.reset(attempt.pair)

    def check(self, *buckets: Bucket) -> None:
        """TooManyAttempts if any bucket is over its limit already; counts nothing."""
        for bucket in buckets:
            ok, retry = self.counters.peek(bucket, *self.rules[bucket.name])
            if not ok:
                raise TooManyAttempts(retry)

    def reset(self, *buckets: Bucket) -> None:
        for bucket in buckets:
            self.counters.clear(bucket)
