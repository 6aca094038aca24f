"""The production HTTP server behind `authserver serve`: Granian's WSGI interface.

Granian parses HTTP and keeps connections alive in Rust; each worker process
runs the app in a few Python threads. Measured against gunicorn (sync, and
gthread with keep-alive) on the same 2-core machine, it spends about 0.3 ms
less server CPU per request (docs/benchmarks.md). `authserver serve` execs
`python -m authserver.server` with the environment already set, so the
workers import the app (and prometheus-client its multi-process mode) fresh.
Each worker builds its app with `create_app` below, which first pins the C
allocator's thresholds (authserver/memory.py: argon2's buffers go back to the
system after each hash).
"""

from __future__ import annotations

import argparse

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from . import create_app as make_app
from .memory import release_large_buffers

# Granian's own messages (start, worker spawn and exit) as JSON lines, like the app's.
# No access log: the app writes its own line per request (path only, with the request id);
# Granian's would carry the query string, where codes and tokens travel.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "authserver.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {
        "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "granian.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}


def create_app():
    """Granian's factory, called in each worker: the allocator set up before the app makes its first hash."""
    release_large_buffers()
    return make_app()


def build(host: str, port: int, workers: int, threads: int) -> Server:
    return Server(
        "authserver.server:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,  # behind a reverse proxy; no h2c upgrades
        http1_settings=HTTP1Settings(keep_alive=True, header_read_timeout=30_000),
        websockets=False,
        workers=workers,
        blocking_threads=threads,
        log_level=LogLevels.info,
        log_dictconfig=LOGGING,
        log_access=False,
        respawn_failed_workers=True,  # a crashed worker is replaced, not the whole server stopped
        workers_kill_timeout=10,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m authserver.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    build(args.host, args.port, args.workers, args.threads).serve()


if __name__ == "__main__":
    main()
