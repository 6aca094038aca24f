"""Settings for the app under test: a fresh secret key, master key and pepper, cheap hashing."""

from __future__ import annotations

import secrets
from pathlib import Path

from authserver.settings import Settings


def _key() -> bytes:
    return secrets.token_bytes(32)


def make_settings(instance_path: Path, database_url: str, **overrides) -> Settings:
    base = Settings(
        env="test",
        instance_path=instance_path,
        issuer="http://localhost",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(48),
        master_keys=(_key(),),
        pepper=_key(),
        # Cheap hashing in tests; production enforces OWASP's minimum.
        argon2_time_cost=1,
        argon2_memory_kib=64,
        argon2_parallelism=1,
        log_level="WARNING",
    )
    return base.replace(**overrides)
