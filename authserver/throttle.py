"""Throttling of failed credential checks, per account and per address.

Built on `limits` (the storage and strategies behind Flask-Limiter): an
in-process store by default, Redis when AUTHSERVER_REDIS_URL is set so that
every worker and host shares the counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

# Failures allowed per window before further attempts are refused.
DEFAULT_RULES = {
    "password:account": "10/5minutes",
    "password:address": "50/5minutes",
    "totp:account": "5/5minutes",
    "totp:address": "30/5minutes",
    "key:address": "30/minute",
    "client:address": "60/minute",
    "broker:address": "30/minute",  # unknown broker transaction handles
    "broker-start:address": "120/minute",  # broker transactions started (rows written unauthenticated)
}


class TooManyAttempts(Exception):
    """Refused until the window moves on; `retry_after` is in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed attempts; try again in {retry_after} seconds.")
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class Bucket:
    name: str
    key: str


class Throttle:
    def __init__(self, storage_url: str | None = None, rules: dict[str, str] | None = None):
        self.storage = storage_from_string(storage_url or "memory://")
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rules = {name: parse(text) for name, text in {**DEFAULT_RULES, **(rules or {})}.items()}

    def check(self, *buckets: Bucket) -> None:
        """Raise TooManyAttempts if any bucket has used up its failures."""
        for bucket in buckets:
            item = self.rules[bucket.name]
            if not self.limiter.test(item, bucket.name, bucket.key):
                stats = self.limiter.get_window_stats(item, bucket.name, bucket.key)
                raise TooManyAttempts(int(stats.reset_time - time.time()) + 1)

    def fail(self, *buckets: Bucket) -> None:
        for bucket in buckets:
            self.limiter.hit(self.rules[bucket.name], bucket.name, bucket.key)

    def reset(self, *buckets: Bucket) -> None:
        for bucket in buckets:
            self.limiter.clear(self.rules[bucket.name], bucket.name, bucket.key)
