"""Forward-auth under load: `authserver serve` (gunicorn) against wrk on 127.0.0.1, for a bounded time.

    python bench/forward_auth.py [--duration 10] [--connections 16] [--workers 2] [--database-url URL]

Sets up a throw-away instance (SQLite unless --database-url), creates a user,
logs in over JSON for a session cookie, then lets wrk ask
GET /api/authz/forward-auth with that cookie and an X-Original-URL, as nginx
would. Prints req/s, p50/p99 latency, server CPU per request (the gunicorn
processes' user+system time over the run, from /proc) and peak RSS per worker.
Linux only (reads /proc); needs `wrk` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
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
PASSWORD = "bench-password-not-secret"
TICKS = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (1-120)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (one leaves the cores to the server)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp instance")
    parser.add_argument("--path", default="/api/authz/forward-auth",
                        help="what wrk asks for; /healthz shows the floor of the stack for comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be 1 to 120 seconds")
    wrk = shutil.which("wrk")
    if wrk is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="authserver-bench-") as instance:
        env = server_env(instance, args)
        cli([sys.executable, "-m", "authserver", "db", "upgrade"], env)
        username = f"bench-{secrets.token_hex(4)}"  # a shared database may hold earlier runs' users
        cli([sys.executable, "-m", "authserver", "user", "create", username, "--email", "bench@bench.test",
             "--password", PASSWORD, "--group", "photos"], env)
        port = free_port()
        with open(Path(instance) / "serve.log", "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "authserver", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, server, args.workers)
            cookie = log_in(base, username)
            processes = [server.pid, *children(server.pid)]
            check = requests.get(base + "/api/authz/forward-auth", headers=load_headers(cookie), timeout=5)
            assert check.status_code == 200 and check.headers["Remote-User"] == username, check.status_code
            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(processes)
            result = run_wrk(wrk, base, cookie, args)
            cpu_after = cpu_seconds(processes)
            rss = [peak_rss_kib(pid) for pid in processes[1:]]
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()

    result.update(
        path=args.path,
        database="postgresql" if args.database_url else "sqlite",
        workers=args.workers,
        connections=args.connections,
        duration_s=args.duration,
        cpu_per_request_us=per_request(sum(cpu_after) - sum(cpu_before), result["requests"]),
        cpu_user_per_request_us=per_request(cpu_after[0] - cpu_before[0], result["requests"]),
        cpu_system_per_request_us=per_request(cpu_after[1] - cpu_before[1], result["requests"]),
        peak_rss_per_worker_mib=round(max(rss) / 1024, 1) if rss else None,
        load_average_before=round(load_before, 2),
        cpus=os.cpu_count(),
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0 if result["errors"] == 0 else 1


def server_env(instance: str, args) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        AUTHSERVER_INSTANCE_PATH=instance,
        AUTHSERVER_WORKERS=str(args.workers),
        AUTHSERVER_LOG_LEVEL="WARNING",
    )
    if args.database_url:
        env["AUTHSERVER_DATABASE_URL"] = args.database_url
    return env


def cli(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[2:4])} failed: {done.stderr.strip()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, server: subprocess.Popen, workers: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"authserver serve exited with {server.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=1).status_code == 200 and len(children(server.pid)) >= workers:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    sys.exit("authserver serve did not become ready within 30 s")


def log_in(base: str, username: str) -> str:
    response = requests.post(base + "/api/session/login", json={"username": username, "password": PASSWORD}, timeout=10)
    response.raise_for_status()
    return response.cookies["authserver_session"]


def load_headers(cookie: str) -> dict[str, str]:
    return {"Cookie": f"authserver_session={cookie}", "X-Original-URL": "https://photos.bench.test/albums/1"}


def run_wrk(wrk: str, base: str, cookie: str, args) -> dict:
    command = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s", "--latency"]
    for name, value in load_headers(cookie).items():
        command += ["-H", f"{name}: {value}"]
    command.append(base + args.path)
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 60, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.MULTILINE)
    return {
        "requests_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "requests": requests_done,
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "none",
        "command": " ".join(c if " " not in c else repr(c) for c in command).replace(cookie, "<cookie>"),
    }


def per_request(seconds: float, requests_done: int) -> int:
    return round(seconds / max(requests_done, 1) * 1e6)


def to_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return round(float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes so far."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime and stime: fields 14 and 15 of /proc/PID/stat
        system += int(fields[12])
    return user / TICKS, system / TICKS


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


if __name__ == "__main__":
    sys.exit(main())
