"""Every benchmark in one command (`make bench`): the HTTP hot paths, a race against the Node
peer, a burst of password logins with each worker's memory, and in-process key verification.

    PYTHONPATH=. python bench/run_all.py [--duration 10] [--connections 16] [--only token,introspection]
        [--verify-sizes 1000,100000,1000000] [--no-verify] [--no-peer] [--json results.json]
        [--update-docs]

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
- POST /api/session/login with a JSON username and password, for as long as
  each scenario, from 16 threads (argon2id on every request); each worker's
  peak and resident memory is read before and after it

The server runs with its default settings (INFO logging included). Then, when
../shared/peer/oidc-provider and node are there, the Node peer (bench/peer.py)
gets the same wrk settings on its POST /token (client_credentials) and
POST /token/introspection. It reports req/s, p50/p99 latency, the server's CPU
per request (user + system time of Granian's main process and workers, or of the
Node process, from /proc), the peak RSS of each server process, the ratios
against the peer with the issue's targets; then `bench/keyvault_verify.py` times
in-process key verification at 1 thousand, 100 thousand and 1 million stored
keys. `--update-docs` writes the figures into docs/benchmarks.md ("Latest figures").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import (
    LOGIN_SCENARIO,
    ROOT,
    ServedInstance,
    empty_postgresql,
    load,
    login_burst,
    peak_rss_mib,
    private_mib,
    rss_mib,
    scenarios,
)
from peer import (
    INTROSPECTION_SCENARIO,
    PEER_DIR,
    TOKEN_SCENARIO,
    NodePeer,
    PeerUnavailable,
)

# The bars from the issues (req/s on this 2-core machine with 2 workers); the targets are the peers' figures.
BARS = {
    "token (client_credentials)": (2500, 7500),
    "introspection": (3500, 8000),
    "GET /api/me, API key": (3000, 9000),
    "forward-auth, API key": (3000, 9000),
    "forward-auth, session cookie": (3000, 9000),
}
# Issue #20: authserver's req/s over the Node peer's, per pair (authserver scenario, peer scenario).
RACE = (
    ("token (client_credentials)", TOKEN_SCENARIO, 0.8),
    ("introspection", INTROSPECTION_SCENARIO, 1.2),
    ("GET /api/me, API key", INTROSPECTION_SCENARIO, 1.2),
    ("forward-auth, API key", INTROSPECTION_SCENARIO, 1.2),
)
WORKER_RSS_TARGET_MB = 80  # peak RSS per worker, the login burst included (10^6 bytes)
DOCS = ROOT / "docs" / "benchmarks.md"


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
    parser.add_argument("--no-peer", action="store_true", help="skip the race against the Node peer")
    parser.add_argument("--peer-dir", type=Path, default=PEER_DIR, help="the peer to copy (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    parser.add_argument("--update-docs", action="store_true",
                        help='replace the "Latest figures" section of docs/benchmarks.md with this run\'s')
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

    report = {"machine": machine(), "settings": run_settings(args, backends), "http": [], "rss_mib": {},
              "peer": {"results": [], "rss_mib": None, "skipped": ""}, "verify": []}
    print(f"machine: {report['machine']['cpus']} CPUs, load average {report['machine']['load_average']}, "
          f"Python {report['machine']['python']}")
    for backend, url in backends if not args.no_http else []:
        report["http"] += run_http(backend, url, args, extra_env, report["rss_mib"])
    if args.no_http or args.no_peer:
        report["peer"]["skipped"] = "--no-http" if args.no_http else "--no-peer"
    else:
        run_peer(args, report["peer"])
    if not args.no_verify:
        for backend, url in backends:
            report["verify"] += run_verify(backend, url, args)
    report["machine"]["load_average_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    summary = summary_markdown(report)
    print("\n" + summary)
    if args.update_docs:
        update_docs(DOCS, summary)
        print(f"\nwritten to {DOCS.relative_to(ROOT)}")
    results = report["http"] + report["peer"]["results"]
    return 0 if all(r["errors"] == 0 for r in results) else 1


def selected(name: str, only: str) -> bool:
    wanted = [part.strip().lower() for part in only.split(",") if part.strip()]
    return not wanted or any(part in name.lower() for part in wanted)


def report_line(label: str, result: dict) -> None:
    print(f"  {label:10} {result['scenario']:32} {result['requests_per_s']:>6} req/s  "
          f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
          f"{result['server_cpu_ms_per_request']:.3f} CPU-ms/req  load {result['load_average_before']}"
          + (f"  ERRORS {result['errors']}" if result["errors"] else "")
          + (f" ({result['first_error']})" if result.get("first_error") else ""), flush=True)


def run_http(backend: str, url: str, args, extra_env: dict, rss: dict) -> list[dict]:
    instance = ServedInstance(database_url=url, workers=args.workers, extra_env=extra_env)
    results = []
    try:
        creds = instance.start()
        for scenario in scenarios(creds):
            if not selected(scenario.name, args.only):
                continue
            results.append(load(instance, scenario, duration=args.duration, connections=args.connections,
                                threads=args.threads))
            report_line(backend, results[-1])
        pids = instance.pids()
        memory = {"master": peak_rss_mib(pids[0]), "workers": [peak_rss_mib(p) for p in pids[1:]]}
        if selected(LOGIN_SCENARIO, args.only):
            memory["workers_before_logins"] = memory["workers"]
            results.append(login_burst(instance, duration=args.duration, connections=args.connections))
            report_line(backend, results[-1])
            time.sleep(1)  # the last responses written, the threads idle again
            memory["workers"] = [peak_rss_mib(p) for p in pids[1:]]
            memory["workers_resident_after_logins"] = [rss_mib(p) for p in pids[1:]]
            memory["workers_private_after_logins"] = [private_mib(p) for p in pids[1:]]
        rss[backend] = memory
    finally:
        instance.stop()
    return results


def run_peer(args, peer_report: dict) -> None:
    """The same wrk settings against the Node peer, right after the project's scenarios: its
    scenarios that --only names, or that a selected scenario of the project races against."""
    def wanted(name: str) -> bool:
        return selected(name, args.only) or any(theirs == name and selected(ours, args.only)
                                                for ours, theirs, _ in RACE)

    if not any(wanted(name) for name in (TOKEN_SCENARIO, INTROSPECTION_SCENARIO)):
        peer_report["skipped"] = "not selected by --only"
        return
    peer = NodePeer(source=args.peer_dir)
    try:
        peer.start()
        for make in (peer.token_scenario, peer.introspection_scenario):
            scenario = make()
            if wanted(scenario.name):
                result = load(peer, scenario, duration=args.duration, connections=args.connections,
                              threads=args.threads)
                peer_report["results"].append(result)
                report_line("node peer", result)
        peer_report["rss_mib"] = peak_rss_mib(peer.process.pid)
    except PeerUnavailable as exc:
        peer_report["skipped"] = str(exc)
        print(f"Node peer skipped: {exc}", flush=True)
    finally:
        peer.stop()


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


def run_settings(args, backends) -> dict:
    return {
        "command": "PYTHONPATH=. python bench/run_all.py " + shlex.join(sys.argv[1:]),
        "duration": args.duration, "connections": args.connections, "threads": args.threads,
        "workers": args.workers, "backends": [name for name, _ in backends], "extra_env": sorted(args.env),
    }


def summary_markdown(report: dict) -> str:
    """The "Latest figures" section of docs/benchmarks.md for this run (printed, and written by --update-docs)."""
    m, settings = report["machine"], report["settings"]
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    lines = [
        f"## Latest figures ({date.today().isoformat()})",
        "",
        f"`{settings['command']}`"
        + (" with `AUTHSERVER_BENCH_DATABASE_URL` set" if "postgresql" in settings["backends"] else "")
        + f"; {m['cpus']} CPUs ({m['cpu_model']}), load average {m['load_average']:.2f} before, "
        f"{m['load_average_after']:.2f} after. Each scenario: a 2 s warm-up, then "
        f"`wrk -t{settings['threads']} -c{settings['connections']} -d{settings['duration']}s`, the same for the "
        f"peer. authserver: {settings['workers']} Granian workers × 4 threads with its default settings "
        "(INFO logging: one JSON access line per request"
        + (f"; extra environment {', '.join(settings['extra_env'])}" if settings["extra_env"] else "")
        + "). The peer: one Node process (one core), `NODE_ENV=production`. Figures move with the "
        "machine's load; CPU per request is the steadier one.",
    ]
    lines += ["", "### authserver against the Node peer (panva/oidc-provider)", ""]
    peer = {r["scenario"]: r for r in report["peer"]["results"]}
    if not peer:
        lines.append(f"Not raced: {report['peer']['skipped'] or 'no peer figures'}.")
    else:
        lines += [
            ("| backend | authserver scenario | peer scenario | authserver req/s | peer req/s | ratio | target | met "
             "| authserver CPU-ms/req | peer CPU-ms/req | authserver p50 / p99 ms | peer p50 / p99 ms |"),
            "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in report["http"]:
            for ours, theirs, target in RACE:
                other = peer.get(theirs)
                if r["scenario"] != ours or other is None:
                    continue
                ratio = r["requests_per_s"] / max(other["requests_per_s"], 1)
                lines.append(
                    f"| {names[r['backend']]} | {ours} | {theirs} | {r['requests_per_s']:,} | "
                    f"{other['requests_per_s']:,} | {ratio:.2f}× | ≥ {target}× | "
                    f"{'yes' if ratio >= target else '**no**'} | "
                    f"{r['server_cpu_ms_per_request']:.3f} | {other['server_cpu_ms_per_request']:.3f} | "
                    f"{r['p50_ms']} / {r['p99_ms']} | {other['p50_ms']} / {other['p99_ms']} |")
        if report["peer"]["rss_mib"] is not None:
            lines += ["", f"The peer's peak RSS: {report['peer']['rss_mib']} MiB (one process)."]
    lines += memory_markdown(report, names)
    lines += [
        "", "### Every scenario", "",
        ("| backend | scenario | req/s | bar / target | p50 ms | p99 ms | server CPU-ms/req | PostgreSQL CPU-ms/req"
         " | load before |"),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["http"] + report["peer"]["results"]:
        bar = BARS.get(r["scenario"])
        shown = f"{bar[0]:,} / {bar[1]:,}" if bar else ""
        database = f"{r['database_cpu_ms_per_request']:.3f}" if r.get("database_cpu_ms_per_request") is not None else ""
        backend = names.get(r["backend"], r["backend"])
        lines.append(f"| {backend} | {r['scenario']} | {r['requests_per_s']:,} | {shown} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['server_cpu_ms_per_request']:.3f} | {database} | "
                     f"{r['load_average_before']} |" + (f" {r['errors']} errors" if r["errors"] else ""))
    if report["verify"]:
        lines += ["", "### In-process key verification (`KeyService.verify`, wall time)", "",
                  "| backend | stored keys | p50 µs | p90 µs | p99 µs |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in report["verify"]:
            lines.append(f"| {names[r['backend']]} | {r['stored_keys']:,} | {r['p50_us']} | {r['p90_us']} | "
                         f"{r['p99_us']} |")
    return "\n".join(lines) + "\n"


def memory_markdown(report: dict, names: dict) -> list[str]:
    target_mib = WORKER_RSS_TARGET_MB * 10**6 / 2**20
    heading = (f"### Memory per worker (target: peak RSS < {WORKER_RSS_TARGET_MB} MB = {target_mib:.1f} MiB, "
               "the login burst included)")
    lines = ["", heading, ""]
    if not report["rss_mib"]:
        return lines + ["Not measured (no HTTP run)."]
    logins = {r["backend"]: r for r in report["http"] if r["scenario"] == LOGIN_SCENARIO}
    lines += [("| backend | Granian main, peak | worker | peak before the logins | peak after | "
               "resident after | of it private | logins | met |"),
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for backend, rss in report["rss_mib"].items():
        none = [None] * len(rss["workers"])
        before = rss.get("workers_before_logins", none)
        after = rss.get("workers_resident_after_logins", none)
        private = rss.get("workers_private_after_logins", none)
        burst = logins.get(backend)
        for index, peak in enumerate(rss["workers"]):
            shown = [f"{v} MiB" if v is not None else "" for v in (before[index], peak, after[index], private[index])]
            lines.append(f"| {names[backend]} | {rss['master']} MiB | {index + 1} | {' | '.join(shown)} | "
                         f"{burst['requests'] if burst else 'none'} | {'yes' if peak < target_mib else '**no**'} |")
    return lines


def update_docs(path: Path, section: str) -> None:
    """Replace the "## Latest figures" section (up to the next level-2 heading) with `section`."""
    text = path.read_text()
    match = re.search(r"^## Latest figures.*?(?=^## )", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise SystemExit(f'{path}: no "## Latest figures" section followed by another "## " section')
    path.write_text(text[:match.start()] + section + "\n" + text[match.end():])


if __name__ == "__main__":
    sys.exit(main())
