"""The HTTP half of the benchmarks: a served instance on 127.0.0.1, seeded, loaded by wrk.

`ServedInstance` makes a throw-away instance (SQLite in a temporary folder, or
an emptied PostgreSQL database), seeds one user, one API key, one
client_credentials client, an access token and a session cookie through the
CLI and the HTTP API, and runs `authserver serve` (2 workers by default).
`load()` runs one bounded wrk scenario after a warm-up and measures the
server's own CPU time from /proc (master and workers, user + system) and the
peak RSS of each server process; `login_burst()` signs in with the JSON API
from many loopback addresses for a while (argon2 on every request). The server
runs with the default settings (INFO logging: one JSON access line a request).
Linux only; needs `wrk` on PATH.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password-not-secret"
ORIGINAL_URL = "https://photos.bench.test/albums/1"
LOGIN_SCENARIO = "password logins (JSON)"
# The default throttle allows 50 password attempts per address in 5 minutes; each login
# thread moves to a fresh loopback source address (127.0.<thread>.<n>) well before that.
LOGINS_PER_ADDRESS = 40


@dataclass(frozen=True)
class Scenario:
    """One wrk run: a name, a path, and how to build its request from the seeded credentials."""

    name: str
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


@dataclass
class Credentials:
    api_key: str = ""  # pkid-…:secret
    client_basic: str = ""  # "Basic …" for the client_credentials client
    access_token: str = ""
    session_cookie: str = ""


def scenarios(creds: Credentials) -> list[Scenario]:
    form = ("Content-Type", "application/x-www-form-urlencoded")
    client = ("Authorization", creds.client_basic)
    original = ("X-Original-URL", ORIGINAL_URL)
    return [
        Scenario("token (client_credentials)", "/oauth/token", "POST", (form, client), "grant_type=client_credentials"),
        Scenario("introspection", "/oauth/introspect", "POST", (form, client), f"token={creds.access_token}"),
        Scenario("GET /api/me, API key", "/api/me", headers=(("X-API-Key", creds.api_key),)),
        Scenario("forward-auth, API key", "/api/authz/forward-auth", headers=(("X-API-Key", creds.api_key), original)),
        Scenario("forward-auth, session cookie", "/api/authz/forward-auth",
                 headers=(("Cookie", f"authserver_session={creds.session_cookie}"), original)),
        Scenario("GET /healthz (floor)", "/healthz"),
    ]


@dataclass
class ServedInstance:
    database_url: str = ""  # empty: SQLite in the temporary instance folder
    workers: int = 2
    extra_env: dict = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="authserver-bench-")))
    process: subprocess.Popen | None = None
    base: str = ""

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
        env.update(
            PYTHONPATH=str(ROOT),
            AUTHSERVER_INSTANCE_PATH=str(self.workdir),
            AUTHSERVER_WORKERS=str(self.workers),
            AUTHSERVER_ISSUER=self.base or "http://127.0.0.1:5000",
            **self.extra_env,
        )
        if self.database_url:
            env["AUTHSERVER_DATABASE_URL"] = self.database_url
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "authserver", *args], env=self.env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise SystemExit(f"authserver {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> Credentials:
        """Empty the database, seed it, serve, and return working credentials."""
        self.base = f"http://127.0.0.1:{free_port()}"
        if self.database_url:
            empty_postgresql(self.database_url)
        self.cli("db", "upgrade")
        self.cli("user", "create", "bench", "--email", "bench@bench.test", "--name", "Bench User",
                 "--password", PASSWORD, "--group", "photos")
        key = json.loads(self.cli("key", "mint", "--user", "bench", "--name", "bench", "--json"))
        client = json.loads(self.cli("client", "create", "--name", "bench", "--grant", "client_credentials",
                                     "--introspect", "--scope", "photos:read", "--json"))
        port = self.base.rsplit(":", 1)[1]
        with open(self.workdir / "serve.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "authserver", "serve", "--host", "127.0.0.1", "--port", port],
                env=self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._wait_ready()
        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        creds = Credentials(api_key=f"{key['key_id']}:{key['secret']}", client_basic=f"Basic {basic}")
        token = requests.post(self.base + "/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": creds.client_basic}, timeout=10)
        token.raise_for_status()
        creds.access_token = token.json()["access_token"]
        login = requests.post(self.base + "/api/session/login", json={"username": "bench", "password": PASSWORD},
                              timeout=30)
        login.raise_for_status()
        creds.session_cookie = login.cookies["authserver_session"]
        return creds

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"authserver serve exited: {(self.workdir / 'serve.log').read_text()[-2000:]}")
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200 and \
                        len(children(self.process.pid)) >= self.workers:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise SystemExit("authserver serve did not become ready within 60 s")

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def check(self, scenario: Scenario) -> None:
        check(self.base, scenario)

    def stop(self) -> None:
        stop_group(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def check(base: str, scenario: Scenario) -> None:
    """One request as wrk will send it must succeed (a benchmark of 401s measures nothing), and an
    introspection must find its token active (an unknown token is a 200 too)."""
    response = requests.request(scenario.method, base + scenario.path, headers=dict(scenario.headers),
                                data=scenario.body or None, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"{scenario.name}: {response.status_code} {response.text[:300]}")
    if "introspect" in scenario.path and response.json().get("active") is not True:
        raise SystemExit(f"{scenario.name}: the token is not active: {response.text[:300]}")


def load(instance: ServedInstance, scenario: Scenario, *, duration: int, connections: int, threads: int,
         warmup: int = 2) -> dict:
    """Warm up, then one bounded wrk run; req/s, latency percentiles, server CPU per request."""
    instance.check(scenario)
    script = instance.workdir / "request.lua"
    script.write_text(wrk_script(scenario))
    command = ["wrk", f"-t{threads}", f"-c{connections}", "--latency", "-s", str(script), instance.base + scenario.path]
    if warmup:
        subprocess.run([*command[:1], f"-d{warmup}s", *command[1:]], capture_output=True, check=True,
                       timeout=warmup + 30)
    pids = instance.pids()
    database = database_pids(instance.database_url) if instance.database_url else []
    load_before = os.getloadavg()[0]
    cpu_before, database_before = cpu_seconds(pids), cpu_seconds(database)
    output = subprocess.run([*command[:1], f"-d{duration}s", *command[1:]], capture_output=True, text=True,
                            check=True, timeout=duration + 60).stdout
    cpu_used = sum(cpu_seconds(pids)) - sum(cpu_before)
    database_used = sum(cpu_seconds(database)) - sum(database_before)
    instance.check(scenario)  # still answering as it should after the run
    result = parse_wrk(output)
    requests_done = max(result["requests"], 1)
    result.update(
        scenario=scenario.name,
        backend=instance.backend,
        server_cpu_ms_per_request=round(cpu_used * 1000 / requests_done, 3),
        # PostgreSQL's own processes (same host), the other share of the two cores.
        database_cpu_ms_per_request=round(database_used * 1000 / requests_done, 3) if database else None,
        server_cpu_share=round(cpu_used / duration, 2),  # cores' worth of CPU the server got
        load_average_before=round(load_before, 2),
    )
    return result


def login_burst(instance: ServedInstance, *, duration: int, connections: int) -> dict:
    """`connections` threads sign in with `POST /api/session/login` (username and password, JSON)
    for `duration` seconds, each from its own loopback source address, changed every
    LOGINS_PER_ADDRESS logins so that the default throttle never refuses one: every request
    checks the password (argon2id at the configured cost). Figures as `load()` gives them."""
    host, port = instance.base.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"username": "bench", "password": PASSWORD})
    headers = {"Content-Type": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures: list[str] = []
    deadline = time.monotonic() + duration

    def sign_in(index: int) -> None:
        done = 0
        connection = None
        while time.monotonic() < deadline and not failures:
            if connection is None or done % LOGINS_PER_ADDRESS == 0:
                if connection is not None:
                    connection.close()
                source = f"127.0.{index % 255 + 1}.{done // LOGINS_PER_ADDRESS % 254 + 1}"
                connection = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
            started = time.perf_counter()
            try:
                connection.request("POST", "/api/session/login", body, headers)
                response = connection.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                break
            latencies[index].append(time.perf_counter() - started)
            if response.status != 200:
                failures.append(f"{response.status} {text[:200]!r}")
            done += 1
        if connection is not None:
            connection.close()

    pids = instance.pids()
    database = database_pids(instance.database_url) if instance.database_url else []
    load_before = os.getloadavg()[0]
    cpu_before, database_before = cpu_seconds(pids), cpu_seconds(database)
    started = time.monotonic()
    threads = [threading.Thread(target=sign_in, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 60)
    elapsed = time.monotonic() - started
    cpu_used = sum(cpu_seconds(pids)) - sum(cpu_before)
    database_used = sum(cpu_seconds(database)) - sum(database_before)
    times = sorted(t for per_thread in latencies for t in per_thread)
    requests_done = max(len(times), 1)
    return {
        "requests": len(times),
        "requests_per_s": round(len(times) / elapsed),
        "p50_ms": round(times[len(times) // 2] * 1000, 2) if times else 0.0,
        "p99_ms": round(times[min(len(times) - 1, len(times) * 99 // 100)] * 1000, 2) if times else 0.0,
        "errors": len(failures),
        "first_error": failures[0] if failures else "",
        "socket_errors": "",
        "scenario": LOGIN_SCENARIO,
        "backend": instance.backend,
        "server_cpu_ms_per_request": round(cpu_used * 1000 / requests_done, 3),
        "database_cpu_ms_per_request": round(database_used * 1000 / requests_done, 3) if database else None,
        "server_cpu_share": round(cpu_used / elapsed, 2),
        "load_average_before": round(load_before, 2),
    }


def wrk_script(scenario: Scenario) -> str:
    lines = [f'wrk.method = "{scenario.method}"']
    for name, value in scenario.headers:
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if scenario.body:
        lines.append(f"wrk.body = {json.dumps(scenario.body)}")
    return "\n".join(lines) + "\n"


def parse_wrk(output: str) -> dict:
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    requests_done = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {
        "requests": requests_done,
        "requests_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))),
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def stop_group(process: subprocess.Popen | None) -> None:
    """Stop a server started in its own process group: SIGTERM, then SIGKILL after 20 s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (the server's workers, and any process they start)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds these processes have used so far (fields 14 and 15 of /proc/PID/stat)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / TICKS, system / TICKS


def database_pids(url: str = "") -> list[int]:
    """The processes of the PostgreSQL server that `url` names, when it runs on this host
    (its postmaster, found by the port on its command line, and the postmaster's children);
    every PostgreSQL process on the host when none matches (another cluster's work then counts)."""
    postgres = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    postgres.append(int(entry.name))
            except OSError:
                continue
    port = str(make_url(url).port or 5432) if url else ""
    for pid in postgres:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        flag = argv.index(b"-p") if b"-p" in argv else -1
        if port and 0 <= flag < len(argv) - 1 and argv[flag + 1] == port.encode():
            return [pid, *children(pid)]
    return postgres


def peak_rss_mib(pid: int) -> float:
    """The most this process has had resident since it started (VmHWM), MiB."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """What this process has resident now (VmRSS), MiB."""
    return _status_mib(pid, "VmRSS")


def private_mib(pid: int) -> float:
    """What this process alone has resident now (private pages, from smaps_rollup), MiB. A worker's
    RSS also counts the pages it still shares with Granian's main process, which imported the
    package's modules before it forked the workers."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kib = sum(int(value) for value in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", rollup, re.MULTILINE))
    return round(kib / 1024, 1)


def _status_mib(pid: int, field: str) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def empty_postgresql(url: str) -> None:
    """Drop everything in the benchmark database (it is named for benchmarks only)."""
    from sqlalchemy import create_engine, text

    from authserver.settings import check_database_url

    engine = create_engine(check_database_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
