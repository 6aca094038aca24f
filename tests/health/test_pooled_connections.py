"""PostgreSQL pool: stale connections are replaced at check-out, live ones are not pinged.

What the server last ran on a pooled connection is read from pg_stat_activity
through a second connection, so the tests see whether a check-out pinged.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from authserver.extensions import check_pooled_connections
from tests.helpers.database import PG_URL

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL not configured: set AUTHSERVER_TEST_DATABASE_URL")


@pytest.fixture
def engines(database_urls):
    pooled = create_engine(database_urls["postgresql"], pool_size=1, max_overflow=0)
    observer = create_engine(database_urls["postgresql"], poolclass=None)
    yield pooled, observer
    pooled.dispose()
    observer.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def last_query(observer, pid: int) -> str:
    with observer.connect() as conn:
        return conn.execute(text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar() or ""


def test_a_connection_in_steady_use_is_not_pinged_at_check_out(engines):
    pooled, observer = engines
    check_pooled_connections(pooled, idle_seconds=60)
    pid = backend_pid(pooled)
    before = last_query(observer, pid)
    with pooled.connect() as conn:
        assert last_query(observer, pid) == before  # nothing ran at check-out
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid


def test_a_connection_idle_for_a_while_is_pinged_at_check_out(engines):
    pooled, observer = engines
    check_pooled_connections(pooled, idle_seconds=0.2)
    pid = backend_pid(pooled)
    before = last_query(observer, pid)
    time.sleep(0.3)
    with pooled.connect() as conn:
        assert last_query(observer, pid) != before  # the ping ran at check-out
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid


def test_a_connection_the_server_closed_is_replaced_at_check_out(engines):
    pooled, observer = engines
    check_pooled_connections(pooled, idle_seconds=60)
    pid = backend_pid(pooled)
    with observer.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    deadline = time.monotonic() + 10
    while last_query(observer, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Recently used, so not pinged for its age: the closed socket gives it away, and the
    # pool hands out a fresh connection instead of failing the request.
    with pooled.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert backend_pid(pooled) != pid
