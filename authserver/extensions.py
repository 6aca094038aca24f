"""Flask extensions, created unbound and initialised in the factory."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

# Stable constraint names so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL for concurrent readers, enforced foreign keys, a busy timeout instead of errors."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def check_pooled_connections(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Hand out only live connections, without pool_pre_ping's round trip on every check-out.

    SQLAlchemy's pessimistic-disconnect recipe, narrowed to the connections that may be
    stale: one the server closed (a restart or an idle kill leaves the socket readable:
    an error message or end-of-file, where an idle connection has nothing to read), or one
    idle for longer than `idle_seconds` (a silent network drop). Those are pinged; a failed
    ping raises DisconnectionError, and the pool then replaces the connection with a fresh one.
    A connection in steady use costs one non-blocking poll() per check-out.
    """

    @event.listens_for(engine.pool, "checkin")
    def _idle_since(dbapi_connection, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_stale(dbapi_connection, record, proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None:  # just connected
            return
        if time.monotonic() - idle_since < idle_seconds and not _has_input(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error: the connection is gone
            raise DisconnectionError("stale pooled connection") from exc


def _has_input(dbapi_connection) -> bool:
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def owner_only_sqlite_files(database: str | None) -> None:
    """The SQLite file (and its -wal/-shm, which SQLite creates with the database file's own
    mode) readable by the owner only, whatever the umask or the directory's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            pass


def init_app(app) -> None:
    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "postgresql":
                check_pooled_connections(engine)
            elif engine.dialect.name == "sqlite":
                owner_only_sqlite_files(engine.url.database)
