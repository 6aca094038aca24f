"""Real reverse proxies for the forward-auth tests: an echoing upstream, free ports, process start-up."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers.servers import ROOT, free_port

EXAMPLES = ROOT / "config" / "examples"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with the identity headers it received (names starting with `shown`), as JSON."""

    shown: tuple[str, ...] = ("remote-",)

    def _answer(self):
        seen = {k: v for k, v in self.headers.items() if k.lower().startswith(self.shown)}
        body = json.dumps({"path": self.path, "method": self.command, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


class EchoUpstream:
    """The photo gallery stand-in: a Python http.server in a thread."""

    def __init__(self, handler: type[EchoHandler] = EchoHandler):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}:\n{read(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the proxy did not listen on {port} within {timeout} s:\n{read(log)}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


NGINX_WRAPPER = """\
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    upstream authserver {{ server 127.0.0.1:{app_port}; }}
    upstream photos {{ server 127.0.0.1:{upstream_port}; }}
    include {run}/site.conf;
}}
"""

CADDY_WRAPPER = """\
{{
\tadmin off
\tauto_https off
\tdefault_bind 127.0.0.1
}}
import {example}
"""


def binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {name}; .ci/run does)")
    return path


@contextlib.contextmanager
def run_nginx(run: Path, app_port: int, upstream_port: int, host: str) -> Iterator[str]:
    """nginx, in the foreground, running the example site with only its `listen` changed."""
    nginx = binary("nginx")
    run.mkdir()
    port = free_port()
    site = (EXAMPLES / "nginx-forward-auth.conf").read_text()
    assert site.count("listen 80;") == 1
    (run / "site.conf").write_text(site.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    (run / "nginx.conf").write_text(
        NGINX_WRAPPER.format(
            run=run,
            # As root nginx would switch its worker to "nobody", which cannot use the temp dir.
            user="user root;" if os.geteuid() == 0 else "",
            app_port=app_port,
            upstream_port=upstream_port,
        )
    )
    log = run / "error.log"
    command = [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e", str(log)]
    with _running(command, port, log, env=None):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def run_nginx_in_front(run: Path, app_port: int) -> Iterator[str]:
    """nginx as the reverse proxy in front of the server, running config/examples/nginx-authserver.conf
    with only its `listen` line and its upstream's port changed."""
    nginx = binary("nginx")
    run.mkdir()
    port = free_port()
    site = (EXAMPLES / "nginx-authserver.conf").read_text()
    assert site.count("listen 80;") == 1 and site.count("server 127.0.0.1:8000;") == 1
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};").replace(
        "upstream authserver { server 127.0.0.1:8000; }", "")
    (run / "site.conf").write_text(site)
    (run / "nginx.conf").write_text(
        NGINX_WRAPPER.format(run=run, user="user root;" if os.geteuid() == 0 else "", app_port=app_port,
                             upstream_port=app_port)
    )
    log = run / "error.log"
    command = [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e", str(log)]
    with _running(command, port, log, env=None):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def run_caddy(run: Path, app_port: int, upstream_port: int, host: str) -> Iterator[str]:
    """Caddy, in the foreground, running the example Caddyfile as it is (addresses from the environment)."""
    caddy = binary("caddy")
    run.mkdir()
    port = free_port()
    (run / "Caddyfile").write_text(CADDY_WRAPPER.format(example=EXAMPLES / "Caddyfile.forward-auth"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(run),
        "XDG_CONFIG_HOME": str(run / "config"),
        "XDG_DATA_HOME": str(run / "data"),
        "PHOTOS_SITE": f"http://{host}:{port}",
        "AUTHSERVER_UPSTREAM": f"127.0.0.1:{app_port}",
        "PHOTOS_UPSTREAM": f"127.0.0.1:{upstream_port}",
    }
    command = [caddy, "run", "--config", str(run / "Caddyfile"), "--adapter", "caddyfile"]
    with _running(command, port, run / "caddy.log", env=env):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _running(command: list[str], port: int, log: Path, env: dict | None) -> Iterator[None]:
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        stop(process)
