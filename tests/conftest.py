"""Fixtures: settings, app, db (SQLite and PostgreSQL), client, clock, services, live server.

The schema is built once per backend by running the migrations; after each
test every table is emptied. PostgreSQL runs when AUTHSERVER_TEST_DATABASE_URL
names a server (`.ci/run` starts one); otherwise those cases are skipped with
the reason.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from authserver import create_app
from authserver.clock import FixedClock
from authserver.extensions import db as _db
from authserver.settings import Settings, check_database_url

PG_URL = os.environ.get("AUTHSERVER_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgresql"]


def _key() -> bytes:
    return secrets.token_bytes(32)


def make_settings(instance_path: Path, database_url: str, **overrides) -> Settings:
    base = Settings(
        env="test",
        instance_path=instance_path,
        issuer="http://localhost",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(48),
        master_keys=(_key(),),
        pepper=_key(),
        # Cheap hashing in tests; production enforces OWASP's minimum.
        argon2_time_cost=1,
        argon2_memory_kib=64,
        argon2_parallelism=1,
        log_level="WARNING",
    )
    return base.replace(**overrides)


def _migrate(settings: Settings) -> None:
    from flask_migrate import upgrade

    app = create_app(settings, clock=FixedClock())
    with app.app_context():
        upgrade()
        _db.engine.dispose()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory) -> dict[str, str]:
    """Each backend's URL, with the schema built by the migrations once per run."""
    urls: dict[str, str] = {}
    sqlite_dir = tmp_path_factory.mktemp("sqlite")
    urls["sqlite"] = f"sqlite:///{sqlite_dir / 'test.db'}"
    _migrate(make_settings(sqlite_dir, urls["sqlite"]))
    if PG_URL:
        url = check_database_url(PG_URL)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        urls["postgresql"] = url
        _migrate(make_settings(tmp_path_factory.mktemp("pg-instance"), url))
    return urls


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL not configured: set AUTHSERVER_TEST_DATABASE_URL (.ci/run does)")
    return request.param


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def settings(backend, database_urls, tmp_path) -> Settings:
    return make_settings(tmp_path, database_urls[backend])


@pytest.fixture
def app(settings, clock):
    app = create_app(settings, clock=clock)
    app.config["TESTING"] = True
    with app.app_context():
        yield app
        _empty_tables()
        _db.engine.dispose()


def _empty_tables() -> None:
    _db.session.rollback()
    _db.session.remove()
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in _db.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(_db.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def services(app):
    return app.extensions["authserver"]


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer:
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
def serve_with_own_issuer(make_app):
    """Bind a loopback port, build the app with that URL as its issuer, serve it in a thread.

    Yields (app, url) inside the app's context; afterwards the tables are emptied.
    """
    dispatch = _Dispatch()
    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
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
            _empty_tables()
            _db.engine.dispose()


@pytest.fixture
def live_server(app):
    """The test's app served over real HTTP on a loopback port, in a thread."""
    server = LiveServer(app).start()
    yield server
    server.stop()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


ROOT = Path(__file__).resolve().parent.parent


def cli_command() -> list[str]:
    """The `authserver` console script, run from this checkout's source."""
    import sys

    return [sys.executable, "-m", "authserver"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that imports this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env
