"""Benchmark: client_credentials tokens/s and introspections/s, gunicorn with 2 workers, wrk.

    PYTHONPATH=. python bench/oidc_bench.py [--database-url postgresql://...] [--duration 15] [--connections 16]

Starts a fresh instance (SQLite in a temporary folder unless --database-url is
given; that database is emptied), registers a client with the CLI, serves with
`authserver serve` (gunicorn, AUTHSERVER_WORKERS=2) on 127.0.0.1, runs wrk
against /oauth/token and /oauth/introspect, and prints requests/s, p50/p99
latency and server CPU-ms per request (user+system time of the gunicorn
processes, from /proc, divided by the requests served).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "{auth}"
wrk.body = "{body}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / CLOCK_TICKS


def server_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


def parse_wrk(output: str) -> dict:
    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests_total = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": requests_total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def run_wrk(url: str, auth: str, body: str, duration: int, connections: int, pids: list[int], workdir: Path) -> dict:
    script = workdir / "post.lua"
    script.write_text(LUA.format(auth=auth, body=body))
    before = cpu_seconds(pids)
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    result = parse_wrk(output)
    result["cpu_ms_per_request"] = (cpu_seconds(pids) - before) * 1000 / max(result["requests"], 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AUTHSERVER_INSTANCE_PATH=str(workdir),
        AUTHSERVER_ISSUER=f"http://127.0.0.1:{port}",
        AUTHSERVER_WORKERS="2",
        AUTHSERVER_LOG_LEVEL="WARNING",
    )
    if args.database_url:
        env["AUTHSERVER_DATABASE_URL"] = args.database_url
        from sqlalchemy import create_engine, text

        from authserver.settings import check_database_url

        engine = create_engine(check_database_url(args.database_url))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    cli = [sys.executable, "-m", "authserver"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    created = json.loads(subprocess.run(
        [*cli, "client", "create", "--name", "bench", "--grant", "client_credentials", "--scope", "photos:read", "--json"],
        env=env, check=True, capture_output=True, text=True).stdout)
    auth = "Basic " + base64.b64encode(f"{created['client_id']}:{created['client_secret']}".encode()).decode()

    server = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        pids = server_pids(server.pid)
        token = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": auth}).json()["access_token"]
        backend = "postgresql" if args.database_url else "sqlite"
        results = {
            "backend": backend,
            "token": run_wrk(base + "/oauth/token", auth, "grant_type=client_credentials", args.duration,
                             args.connections, pids, workdir),
            "introspect": run_wrk(base + "/oauth/introspect", auth, f"token={token}", args.duration,
                                  args.connections, pids, workdir),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
