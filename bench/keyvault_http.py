"""GET /api/me with an API key over HTTP against `authserver serve` (gunicorn), driven by wrk.

Sets up a throwaway SQLite instance, mints a key with the CLI, serves on
127.0.0.1 with AUTHSERVER_WORKERS workers, runs wrk for a bounded time and
reports req/s, p50/p99 latency, CPU time per request (from /proc of the
gunicorn master and workers, before and after) and peak RSS per worker.

    PYTHONPATH=. python bench/keyvault_http.py [--duration 20] [--connections 16] [--threads 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "authserver", *args], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def peak_rss_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def wait_ready(url: str, deadline: float) -> None:
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become ready")


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="Also measure GET /healthz (the stack's floor).")
    args = parser.parse_args()

    load_before = Path("/proc/loadavg").read_text().split()[0]
    instance = Path(tempfile.mkdtemp(prefix="kv-http-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(PYTHONPATH=str(ROOT), AUTHSERVER_INSTANCE_PATH=str(instance), AUTHSERVER_LOG_LEVEL="WARNING",
               AUTHSERVER_WORKERS=str(args.workers))
    cli(env, "db", "upgrade")
    cli(env, "user", "create", "bench", "--email", "bench@example.org", "--json")
    minted = json.loads(cli(env, "key", "mint", "--user", "bench", "--name", "bench", "--json"))
    header = f"X-API-Key: {minted['key_id']}:{minted['secret']}"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "authserver", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, time.time() + 30)
        request = urllib.request.Request(url + "/api/me", headers=dict([header.split(": ", 1)]))
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["auth_method"] == "api_key"
        pids = [server.pid, *children(server.pid)]
        results = [run_wrk(args, url + "/api/me", header, pids)]
        if args.baseline:
            results.append(run_wrk(args, url + "/healthz", None, pids))
        rss = {pid: peak_rss_mib(pid) for pid in pids}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)

    print(f"workers: {args.workers}; cores: {os.cpu_count()}; load average before: {load_before}")
    for result in results:
        print(result)
    print("peak RSS (MiB): " + ", ".join(f"{'master' if pid == server.pid else 'worker'} {mib:.1f}"
                                          for pid, mib in rss.items()))


def run_wrk(args, target: str, header: str | None, pids: list[int]) -> str:
    """One bounded wrk run (after a 3 s warm-up): its figures and the server CPU it cost."""
    wrk = ["wrk", f"-t{args.threads}", f"-c{args.connections}", "--latency"]
    if header:
        wrk += ["-H", header]
    subprocess.run([*wrk, "-d3s", target], capture_output=True, check=True, timeout=60)
    before = cpu_seconds(pids)
    command = [*wrk, f"-d{args.duration}s", target]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=args.duration + 60).stdout
    used = cpu_seconds(pids) - before
    total = int(re.search(r"(\d+) requests in", output).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    shown = " ".join("'X-API-Key: pkid-…:<secret>'" if c == header else c for c in command)
    return (f"{shown}\n  requests: {total}; req/s: {rate:.0f}; p50: {p50:.2f} ms; p99: {p99:.2f} ms; "
            f"non-2xx: {errors.group(1) if errors else 0}; server CPU: {used:.2f} s = {used / total * 1e6:.0f} µs/request")


if __name__ == "__main__":
    main()
