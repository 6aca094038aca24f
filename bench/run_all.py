"""Every benchmark in one command (`make bench`): the HTTP hot paths and in-process key verification.

    PYTHONPATH=. python bench/run_all.py [--duration 10] [--connections 16] [--only token,introspection]
        [--verify-sizes 1000,100000,1000000] [--no-verify] [--json results.json]

For SQLite, and for PostgreSQL when AUTHSERVER_BENCH_DATABASE_URL is set (that
database is emptied: give it one of its own), it serves a fresh instance with
`authserver serve` (AUTHSERVER_WORKERS=2) on 127.0.0.1 and drives with wrk,
each for a bounded time after a short warm-up:

- POST /oauth/token, grant_type=client_credentials (client_secret_basic)
- POST /oauth/introspect of an opaque access token
- GET /api/me with X-API-Key
- GET /api/authz/forward-auth with X-API-Key, and with a session cookie
  (both with the X-Original-URL a proxy sends)
- GET /healthz: no credentials, no database, the floor of the stack

It reports req/s, p50/p99 latency, the server's CPU per request (user + system
time of the gunicorn master and workers from /proc) and the peak RSS of each
server process; then `bench/keyvault_verify.py` times in-process key
verification at 1 thousand, 100 thousand and 1 million stored keys.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import (
    ROOT,
    ServedInstance,
    empty_postgresql,
    load,
    peak_rss_mib,
    scenarios,
)

# The bars from the issues (req/s on this 2-core machine with 2 workers); the targets are the peers' figures.
BARS = {
    "token (client_credentials)": (2500, 7500),
    "introspection": (3500, 8000),
    "GET /api/me, API key": (3000, 9000),
    "forward-auth, API key": (3000, 9000),
    "forward-auth, session cookie": (3000, 9000),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per scenario (1-60)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (one leaves the cores to the server)")
    parser.add_argument("--workers", type=int, default=2, help="AUTHSERVER_WORKERS")
    parser.add_argument("--only", default="", help="comma-separated parts of scenario names to run")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (A/B runs); repeatable")
    parser.add_argument("--verify-sizes", default="1000,100000,1000000")
    parser.add_argument("--verify-samples", type=int, default=3000)
    parser.add_argument("--no-verify", action="store_true", help="skip in-process key verification")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP scenarios")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be 1 to 60 seconds")
    if shutil.which("wrk") is None and not args.no_http:
        parser.error("wrk is not installed (apt-get install wrk)")
    extra_env = dict(item.split("=", 1) for item in args.env)

    pg_url = os.environ.get("AUTHSERVER_BENCH_DATABASE_URL", "")
    backends = []
    for name in args.backends.split(","):
        if name == "postgresql" and not pg_url:
            print("PostgreSQL skipped: set AUTHSERVER_BENCH_DATABASE_URL (a database the benchmark may empty)")
            continue
        backends.append((name, pg_url if name == "postgresql" else ""))

    report = {"machine": machine(), "http": [], "rss_mib": {}, "verify": []}
    print(f"machine: {report['machine']['cpus']} CPUs, load average {report['machine']['load_average']}, "
          f"Python {report['machine']['python']}")
    for backend, url in backends if not args.no_http else []:
        report["http"] += run_http(backend, url, args, extra_env, report["rss_mib"])
    if not args.no_verify:
        for backend, url in backends:
            report["verify"] += run_verify(backend, url, args)
    report["machine"]["load_average_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    return 0 if all(r["errors"] == 0 for r in report["http"]) else 1


def run_http(backend: str, url: str, args, extra_env: dict, rss: dict) -> list[dict]:
    instance = ServedInstance(database_url=url, workers=args.workers, extra_env=extra_env)
    wanted = [part.strip().lower() for part in args.only.split(",") if part.strip()]
    results = []
    try:
        creds = instance.start()
        for scenario in scenarios(creds):
            if wanted and not any(part in scenario.name.lower() for part in wanted):
                continue
            result = load(instance, scenario, duration=args.duration, connections=args.connections,
                          threads=args.threads)
            results.append(result)
            print(f"  {backend:10} {scenario.name:30} {result['requests_per_s']:>6} req/s  "
                  f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                  f"{result['server_cpu_ms_per_request']:.3f} CPU-ms/req  load {result['load_average_before']}"
                  + (f"  ERRORS {result['errors']}" if result["errors"] else ""), flush=True)
        pids = instance.pids()
        rss[backend] = {"master": peak_rss_mib(pids[0]), "workers": [peak_rss_mib(p) for p in pids[1:]]}
    finally:
        instance.stop()
    return results


def run_verify(backend: str, url: str, args) -> list[dict]:
    """bench/keyvault_verify.py in its own process (a fresh app, nothing served)."""
    command = [sys.executable, str(ROOT / "bench" / "keyvault_verify.py"), "--sizes", args.verify_sizes,
               "--samples", str(args.verify_samples), "--json"]
    if url:
        empty_postgresql(url)
        command += ["--database-url", url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"key verification ({backend}) failed: {done.stderr.strip()[-2000:]}")
    rows = json.loads(done.stdout.splitlines()[-1])
    for row in rows:
        print(f"  {backend:10} verify at {row['stored_keys']:>9,} keys  p50 {row['p50_us']:7.1f} µs  "
              f"p99 {row['p99_us']:8.1f} µs", flush=True)
    return rows


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0],
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def print_summary(report: dict) -> None:
    print()
    print("| backend | scenario | req/s | bar / target | p50 ms | p99 ms | server CPU-ms/req | PostgreSQL CPU-ms/req"
          " | load before |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in report["http"]:
        bar = BARS.get(r["scenario"])
        shown = f"{bar[0]:,} / {bar[1]:,}" if bar else ""
        database = f"{r['database_cpu_ms_per_request']:.3f}" if r.get("database_cpu_ms_per_request") is not None else ""
        print(f"| {r['backend']} | {r['scenario']} | {r['requests_per_s']:,} | {shown} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['server_cpu_ms_per_request']:.3f} | {database} | {r['load_average_before']} |")
    for backend, rss in report["rss_mib"].items():
        workers = ", ".join(f"{w}" for w in rss["workers"])
        print(f"\npeak RSS ({backend}): master {rss['master']} MiB, workers {workers} MiB")
    if report["verify"]:
        print("\n| backend | stored keys | p50 µs | p90 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in report["verify"]:
            print(f"| {r['backend']} | {r['stored_keys']:,} | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} |")
    m = report["machine"]
    print(f"\n{m['cpus']} CPUs ({m['cpu_model']}); load average {m['load_average']} before, "
          f"{m['load_average_after']} after")


if __name__ == "__main__":
    sys.exit(main())
