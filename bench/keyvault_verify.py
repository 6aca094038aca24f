"""In-process API-key verification at growing numbers of stored keys.

Fills the api_keys table with N keys (bulk executemany), then times
`KeyService.verify` on keys whose secrets are known, each call in a fresh
ORM session as in a request. Prints p50/p99 per size; the target is a p50
under 100 µs that stays flat as N grows.

    PYTHONPATH=. python bench/keyvault_verify.py [--sizes 1000,100000,1000000] [--samples 5000]
        [--database-url postgresql://...]   (default: a fresh SQLite file under /tmp)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from authserver import create_app
from authserver.clock import FixedClock
from authserver.crypto import keyed_hash
from authserver.extensions import db
from authserver.schema import downgrade, upgrade
from authserver.settings import Settings, check_database_url
from keyvault import keyformat
from keyvault.models import ApiKey

BATCH = 50_000
KNOWN_KEYS = 1000


def settings_for(instance: Path, url: str) -> Settings:
    return Settings(
        env="test", instance_path=instance, issuer="http://127.0.0.1", database_url=check_database_url(url),
        secret_key="b" * 48, master_keys=(b"m" * 32,), pepper=b"p" * 32, log_level="WARNING",
        argon2_time_cost=1, argon2_memory_kib=64,
    )


def fill(services, owner_id: int, start: int, stop: int, rng: random.Random, known: list) -> None:
    """Insert keys start..stop-1; every (stop-start)//KNOWN_KEYS-th has a real secret we keep."""
    table = ApiKey.__table__
    now = services.clock.now()
    every = max(1, (stop - start) // KNOWN_KEYS)
    conn = db.session.connection()
    rows = []
    for i in range(start, stop):
        key_id = f"pkid-{now:%Y%m%d}-" + "".join(rng.choices(keyformat.ALPHABET, k=21))
        if (i - start) % every == 0 and len(known) < KNOWN_KEYS * 10:
            secret = keyformat.new_secret()
            known.append((key_id, secret))
            digest = keyed_hash(services.settings.pepper, secret)
        else:
            digest = f"{rng.getrandbits(256):064x}"
        rows.append({"key_id": key_id, "user_id": owner_id, "name": "bench", "scopes": ["photos:read"],
                     "secret_hmac": digest, "allowed_cidrs": [], "created_at": now, "created_by": "bench",
                     "last_used_ip": "", "revoked_by": ""})
        if len(rows) == BATCH:
            conn.execute(table.insert(), rows)
            rows = []
    if rows:
        conn.execute(table.insert(), rows)
    db.session.commit()


def measure(services, keys: list, samples: int, rng: random.Random) -> list[float]:
    timings = []
    verify = services.keys.verify
    for _ in range(samples):
        key_id, secret = rng.choice(keys)
        db.session.remove()  # each verification in a fresh session, as in a request
        started = time.perf_counter_ns()
        verify(key_id, secret, ip="192.0.2.1")
        timings.append((time.perf_counter_ns() - started) / 1000)
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="kv-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    app = create_app(settings_for(workdir, url), clock=FixedClock())
    rng = random.Random(7)
    try:
        with app.app_context():
            if args.database_url:
                downgrade(revision="base")
            upgrade()
            services = app.extensions["authserver"]
            owner = services.accounts.create_user("bench", email="bench@example.org", password="bench-password")
            services.keys.mint(owner, name="warm", expires_in=timedelta(days=1), actor="bench")
            owner_id = owner.id
            known: list = []
            stored = 0
            rows = []
            backend = db.engine.dialect.name
            print(f"backend: {backend}; {args.samples} verifications per size")
            print(f"{'stored keys':>12} {'fill s':>7} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'mean µs':>8}")
            for size in sizes:
                started = time.perf_counter()
                fill(services, owner_id, stored, size, rng, known)
                filled = time.perf_counter() - started
                stored = size
                measure(services, known, 500, rng)  # warm caches and the statement cache
                timings = measure(services, known, args.samples, rng)
                rows.append({"backend": backend, "stored_keys": size, "fill_s": round(filled, 1),
                             **{f"p{q}_us": round(percentile(timings, q), 1) for q in (50, 90, 99)},
                             "mean_us": round(statistics.fmean(timings), 1)})
                print(f"{size:>12,} {filled:>7.1f} {percentile(timings, 50):>8.1f} {percentile(timings, 90):>8.1f} "
                      f"{percentile(timings, 99):>8.1f} {statistics.fmean(timings):>8.1f}", flush=True)
            if args.database_url:
                db.session.remove()
                downgrade(revision="base")
            if args.json:
                print(json.dumps(rows))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
