"""The test databases: the schema built by the migrations, tables emptied after a test, SQL counted.

PostgreSQL runs when AUTHSERVER_TEST_DATABASE_URL names a server (`.ci/run` starts one).
"""

from __future__ import annotations

import contextlib
import os

from sqlalchemy import event, text

from authserver import create_app, hotpath
from authserver.clock import FixedClock
from authserver.extensions import db as _db
from authserver.schema import upgrade
from authserver.settings import Settings

PG_URL = os.environ.get("AUTHSERVER_TEST_DATABASE_URL", "")


def migrate(settings: Settings) -> None:
    """Build the schema of `settings`' database by running every migration."""
    app = create_app(settings, clock=FixedClock())
    with app.app_context():
        upgrade()
        _db.engine.dispose()


def empty_tables() -> None:
    """Empty every table of the current app's database (inside its app context)."""
    _db.session.rollback()
    _db.session.remove()
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in _db.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(_db.metadata.sorted_tables):
                conn.execute(table.delete())


@contextlib.contextmanager
def counted_statements(db):
    """The SQL statements sent on `db`'s engine inside the block, as a list that grows."""
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with hotpath.observed(statements.append):  # the hot path's statements: no engine events
            yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
