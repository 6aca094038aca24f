"""PostgreSQL stops under a running server: 503s, then 200s again once it is back, with no restart."""

from __future__ import annotations

import pytest
import requests

from authserver import create_app
from authserver.schema import upgrade
from authserver.settings import check_database_url
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, make_user
from tests.helpers.servers import PG_BIN, LiveServer, PostgresCluster
from tests.helpers.settings import make_settings

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not (PG_BIN / "pg_ctl").exists(), reason=f"PostgreSQL 15 binaries not found in {PG_BIN}"),
]


@pytest.fixture
def cluster():
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.fixture
def served(cluster, tmp_path):
    """The app on its own cluster, over real HTTP, with a user and a logged-in session."""
    app = create_app(make_settings(tmp_path, check_database_url(cluster.url)))
    with app.app_context():
        upgrade()
        make_user(app.extensions["authserver"], "alice")
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()
        with app.app_context():
            from authserver.extensions import db

            db.engine.dispose()


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"]


def test_database_outage_answers_503_and_recovers_without_restart(cluster, served):
    base = served.url
    app_client = requests.Session()
    assert app_client.post(base + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD}).ok
    browser = requests.Session()
    token = csrf_token(browser.get(base + "/login").text)
    assert app_client.get(base + "/api/me").status_code == 200
    assert requests.get(base + "/readyz").status_code == 200

    # A restart nobody noticed: the pooled connections are dead, and the next requests must not care.
    cluster.stop()
    cluster.start()
    assert app_client.get(base + "/api/me").status_code == 200
    assert requests.get(base + "/readyz").status_code == 200

    cluster.stop()
    for _ in range(3):  # not just the first request after the loss: every one, pooled connection or new
        ready = requests.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        assert_unavailable(app_client.get(base + "/api/me"))
        assert_unavailable(
            requests.post(base + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
        )
    assert requests.get(base + "/healthz").status_code == 200  # the process itself is fine
    page = browser.post(base + "/login", data={"username": "alice", "password": DEFAULT_PASSWORD, "csrf_token": token})
    assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]

    cluster.start()
    assert requests.get(base + "/readyz").json() == {"status": "ok", "database": "ok"}
    assert app_client.get(base + "/api/me").json()["username"] == "alice"  # the session outlived the outage
    fresh = requests.post(base + "/api/session/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
    assert fresh.status_code == 200

