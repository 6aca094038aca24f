"""Fixtures: settings, app, db (SQLite and PostgreSQL), client, clock, services, live server, browser.

The schema is built once per backend by running the migrations; after each
test every table is emptied (1 ms on SQLite, 16 ms on PostgreSQL; why not a
rolled-back transaction: docs/benchmarks.md, "What is left"). PostgreSQL runs
when AUTHSERVER_TEST_DATABASE_URL names a server (`.ci/run` starts one); otherwise those cases are skipped with
the reason. Helper functions and classes live in tests/helpers/.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from authserver import create_app
from authserver.clock import FixedClock
from authserver.extensions import db as _db
from authserver.settings import Settings, check_database_url
from tests.helpers.browser import launched_chromium
from tests.helpers.database import PG_URL, empty_tables, migrate
from tests.helpers.servers import LiveServer
from tests.helpers.settings import make_settings

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory) -> dict[str, str]:
    """Each backend's URL, with the schema built by the migrations once per run."""
    urls: dict[str, str] = {}
    sqlite_dir = tmp_path_factory.mktemp("sqlite")
    urls["sqlite"] = f"sqlite:///{sqlite_dir / 'test.db'}"
    migrate(make_settings(sqlite_dir, urls["sqlite"]))
    if PG_URL:
        url = check_database_url(PG_URL)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        urls["postgresql"] = url
        migrate(make_settings(tmp_path_factory.mktemp("pg-instance"), url))
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
        empty_tables()
        _db.engine.dispose()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def services(app):
    return app.extensions["authserver"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(app):
    """The test's app served over real HTTP on a loopback port, in a thread."""
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the run (tests/browser/, tests/integrations/): Playwright's sync API
    cannot start a second while one runs."""
    with launched_chromium() as chromium:
        yield chromium
