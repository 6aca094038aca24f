"""Real processes and servers for tests: the `authserver` command line and server of this checkout,
the app served over HTTP in a thread, and throwaway PostgreSQL clusters."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from werkzeug.serving import make_server

from authserver.extensions import db as _db
from tests.helpers.database import empty_tables

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/helpers/servers.py -> .


def cli_command() -> list[str]:
    """The `authserver` console script, run from this checkout's source."""
    return [sys.executable, "-m", "authserver"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that imports this checkout's code (PYTHONPATH first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Clusters other people run on this machine: the shared one and the one `.ci/run` starts.
RESERVED_PORTS = {55432, 55439}


def free_port() -> int:
    """A loopback port nobody listens on right now (and not one of the shared clusters')."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


class LiveServer:
    """The app served over real HTTP on a loopback port, in a thread."""

    def __init__(self, app):
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)


class _Dispatch:
    """The WSGI app is made after the socket is bound, so the issuer can be the real URL."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@contextmanager
def serve_with_own_issuer(make_app, *, host: str = "127.0.0.1"):
    """Bind a loopback port, build the app with that URL as its issuer, serve it in a thread.
    `host` names the loopback address in the URL: "localhost" for WebAuthn, whose rp_id must be a
    host name (browsers refuse an IP address as rp_id).

    Yields (app, url) inside the app's context; afterwards the tables are emptied.
    """
    dispatch = _Dispatch()
    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    url = f"http://{host}:{server.server_port}"
    app = make_app(url)
    dispatch.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with app.app_context():
        try:
            yield app, url
        finally:
            server.shutdown()
            thread.join(timeout=5)
            empty_tables()
            _db.engine.dispose()


@contextmanager
def app_at_own_issuer(database_url: str, instance_path: Path):
    """The test settings' app served with its URL as its issuer (what discovery names is where it
    answers, for clients that follow discovery); yields (services, url) in the app's context."""
    from authserver import create_app
    from tests.helpers.settings import make_settings

    def make_app(url):
        return create_app(make_settings(instance_path, database_url, issuer=url))

    with serve_with_own_issuer(make_app) as (app, url):
        yield app.extensions["authserver"], url


class Instance:
    """An instance folder driven through the `authserver` command line, as an operator would."""

    def __init__(self, path: Path, **env: str):
        self.path = path
        self.env = subprocess_env(**{"AUTHSERVER_INSTANCE_PATH": str(path), "AUTHSERVER_ENV": "development", **env})
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.log_path = path.parent / f"{path.name}-server.log"

    def cli(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli_command(), *args], env={**self.env, **env}, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def serve(self, *args: str, wait: float = 45, port: int | None = None) -> Instance:
        """`authserver serve` on a loopback port (a free one unless given), returning once /healthz answers."""
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the workers and reloader too
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.server_log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"serve did not answer /healthz within {wait} s:\n{self.server_log()}")

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (`.ci/pg-start`), to stop and start at will."""

    def __init__(self):
        # Under /tmp itself: when run as root the cluster belongs to the postgres user, who
        # cannot enter pytest's owner-only temp folders.
        self.datadir = tempfile.mkdtemp(prefix="authserver-test-pg-")
        self.port = free_port()
        self.url = ""

    def _as_owner(self, command: str) -> subprocess.CompletedProcess:
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", command] if os.getuid() == 0 else ["sh", "-c", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> PostgresCluster:
        done = subprocess.run(
            ["bash", str(ROOT / ".ci" / "pg-start"), self.datadir, str(self.port)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        self.url = done.stdout.strip().splitlines()[-1]
        return self

    def stop(self) -> None:
        done = self._as_owner(f"{PG_BIN}/pg_ctl -D '{self.datadir}' -m fast -w stop")
        assert done.returncode == 0, done.stderr

    def is_running(self) -> bool:
        return self._as_owner(f"{PG_BIN}/pg_ctl -D '{self.datadir}' status").returncode == 0

    def destroy(self) -> None:
        if self.is_running():
            self._as_owner(f"{PG_BIN}/pg_ctl -D '{self.datadir}' -m immediate -w stop")
        shutil.rmtree(self.datadir, ignore_errors=True)
