"""CPU per request of the WSGI app alone, per hot path, and an optional profile of one path.

    PYTHONPATH=. python bench/inprocess.py [--database-url URL] [--requests 3000] [--profile NAME]
        [--log-level INFO]

No HTTP server and no load generator: each request is a prebuilt WSGI environ handed
to the app in this process, so the figure is the app's own share of a served
request (the server adds its parsing and writing). `--profile introspection` prints
cProfile's top functions for that path. Without `--database-url` a throw-away SQLite
database is used; a PostgreSQL URL names a database this empties. The app logs at the
server's default level, INFO (one JSON access line a request), into a file in the
throw-away folder, as a served instance writes them to its log.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import logging
import pstats
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import empty_postgresql
from werkzeug.test import EnvironBuilder

from authserver import create_app
from authserver.schema import upgrade
from authserver.settings import Settings

PASSWORD = "bench-password-" + secrets.token_urlsafe(8)


def build_app(database_url: str, workdir: Path, log_level: str = "INFO"):
    settings = Settings.from_env({
        "AUTHSERVER_INSTANCE_PATH": str(workdir),
        "AUTHSERVER_DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.db'}",
        "AUTHSERVER_LOG_LEVEL": log_level,
        "AUTHSERVER_ISSUER": "http://127.0.0.1:5000",
    })
    if database_url:
        empty_postgresql(database_url)
    app = create_app(settings)
    log = open(workdir / "app.log", "a", buffering=1)  # noqa: SIM115 (open for the app's lifetime)
    for handler in logging.getLogger("authserver").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)  # line-buffered, as sys.stderr: one write a line
    with app.app_context():
        upgrade()
    return app


def credentials(app) -> dict[str, str]:
    from authserver.extensions import db

    services = app.extensions["authserver"]
    with app.app_context():
        user = services.accounts.create_user("bench", email="bench@bench.test", name="Bench User",
                                             password=PASSWORD, groups=["photos"])
        minted = services.keys.mint(user, name="bench", actor="bench")
        client = services.oidc.clients.create(name="bench", grant_types=["client_credentials"], scope="photos:read",
                                              introspect=True)
        db.session.commit()
        key = f"{minted.key_id}:{minted.secret}"
        basic = "Basic " + base64.b64encode(f"{client.row.client_id}:{client.client_secret}".encode()).decode()
    http = app.test_client()
    token = http.post("/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": basic})
    login = http.post("/api/session/login", json={"username": "bench", "password": PASSWORD})
    assert token.status_code == 200 and login.status_code == 200, (token.data, login.data)
    cookie = login.headers["Set-Cookie"].split(";", 1)[0]
    return {"key": key, "basic": basic, "token": token.json["access_token"], "cookie": cookie}


def cases(creds: dict[str, str]) -> dict[str, dict]:
    form = {"Authorization": creds["basic"], "Content-Type": "application/x-www-form-urlencoded"}
    original = {"X-Original-URL": "https://photos.example.test/albums/1"}
    return {
        "token": {"path": "/oauth/token", "method": "POST", "headers": form, "data": "grant_type=client_credentials"},
        "introspection": {"path": "/oauth/introspect", "method": "POST", "headers": form,
                          "data": f"token={creds['token']}"},
        "me-key": {"path": "/api/me", "headers": {"X-API-Key": creds["key"]}},
        "forward-auth-key": {"path": "/api/authz/forward-auth", "headers": {"X-API-Key": creds["key"], **original}},
        "forward-auth-cookie": {"path": "/api/authz/forward-auth", "headers": {"Cookie": creds["cookie"], **original}},
        "healthz": {"path": "/healthz"},
    }


def caller(app, spec: dict):
    environ = EnvironBuilder(environ_base={"REMOTE_ADDR": "127.0.0.1"}, **spec).get_environ()
    body = environ["wsgi.input"].read()
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status

    def call() -> str:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        out = app(env, start_response)
        b"".join(out)
        close = getattr(out, "close", None)
        if close:
            close()
        return seen["status"]

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="", help="a path's name: print its cProfile top functions")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="AUTHSERVER_LOG_LEVEL (default: the server's default, INFO)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="authserver-inprocess-"))
    app = build_app(args.database_url, workdir, args.log_level)
    calls = {name: caller(app, spec) for name, spec in cases(credentials(app)).items()
             if not args.only or name in args.only.split(",")}
    figures = {}
    for name, call in calls.items():
        status = call()
        if not status.startswith("200"):
            raise SystemExit(f"{name}: {status}")
        for _ in range(300):
            call()
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(args.requests):
            call()
        after = resource.getrusage(resource.RUSAGE_SELF)
        user = (after.ru_utime - before.ru_utime) / args.requests * 1e6
        system = (after.ru_stime - before.ru_stime) / args.requests * 1e6
        figures[name] = user + system
        if not args.json:
            print(f"{name:22s} {figures[name]:8.1f} µs CPU/request (user {user:.1f}, system {system:.1f})")
    if args.json:
        print(json.dumps({name: round(value, 1) for name, value in figures.items()}))
    if args.profile:
        profile = cProfile.Profile(time.process_time)  # CPU time: waits on the database do not count
        call = calls[args.profile]
        profile.enable()
        for _ in range(args.requests):
            call()
        profile.disable()
        pstats.Stats(profile).sort_stats(args.sort).print_stats(45)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
