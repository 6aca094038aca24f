"""Single statements for the per-request hot paths: one prebuilt statement, one round trip.

Identity resolution (API keys, session cookies, bearer tokens), introspection and
client_credentials issuance each need one statement. Through the ORM session each
would also pay the session's begin, bookkeeping and close (on PostgreSQL a BEGIN and a
ROLLBACK round trip too), and even a Core execution costs more than the query itself
(on PostgreSQL, measured: 250 µs of CPU against 55 µs for the driver alone, most of
it building the driver's column descriptions for SQLAlchemy's result metadata).

So a hot statement is a Core construct compiled once per dialect into the driver's
own SQL, with SQLAlchemy's own bind and result processors for each column (UTC
datetimes, JSON, booleans on SQLite), and run on a raw connection from the engine's
pool: on PostgreSQL in autocommit mode, so a read or a one-row insert is one round
trip and is committed by itself. Driver errors become SQLAlchemy's exceptions (a lost
connection is invalidated), so the error layer answers them as for any other query.
The engine's `before_cursor_execute` listeners are called for each statement (with
no Connection and no execution context: there is none), so statement counters and
tracers still see every query.

Nothing is cached but the compiled SQL: every call reads the database, so a
revocation is seen by every worker on its next request. Statements must be prebuilt
(module constants with bind parameters): each distinct construct is compiled once
and kept.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import threading
import weakref
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql import Insert

from .extensions import db


class _Record:
    """Shared by every statement's row class: the columns under a prefix, as a dict."""

    __slots__ = ()

    def prefixed(self, prefix: str) -> dict[str, Any]:
        n = len(prefix)
        return {name[n:]: value for name, value in zip(self._fields, self) if name.startswith(prefix)}

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self))


class _Compiled:
    """One statement in one dialect: SQL text, how to order and convert parameters, how to read rows."""

    __slots__ = ("binders", "names", "readers", "record", "sql")

    def __init__(self, statement, dialect: Dialect, keys: tuple[str, ...]):
        # Positional parameters: psycopg reorders a dict of named ones on every execution.
        compiled = statement.compile(dialect=_positional(dialect),
                                     column_keys=list(keys) if isinstance(statement, Insert) else None)
        if isinstance(statement, Insert) and compiled.insert_prefetch:
            missing = ", ".join(column.key for column in compiled.insert_prefetch)
            raise TypeError(f"hot inserts give every value; missing: {missing}")
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup)
        self.binders = tuple(
            (name, processor)
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        self.record = None
        self.readers: tuple = ()
        if statement.is_select:
            columns = list(statement.selected_columns)
            self.record = type("Record", (namedtuple("Row", statement.selected_columns.keys()), _Record), {"__slots__": ()})
            self.readers = tuple(
                (index, processor)
                for index, column in enumerate(columns)
                if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
            )

    def arguments(self, params: Mapping[str, Any]):
        values = dict(params)
        for name, processor in self.binders:
            values[name] = processor(values[name])
        return tuple(values[name] for name in self.names)

    def row(self, raw):
        if raw is None:
            return None
        values = list(raw)
        for index, processor in self.readers:
            values[index] = processor(values[index])
        return self.record._make(values)


_POSITIONAL: weakref.WeakKeyDictionary[Dialect, Dialect] = weakref.WeakKeyDictionary()


def _positional(dialect: Dialect) -> Dialect:
    """The dialect itself, or a copy that writes `%s` where it would write `%(name)s`."""
    if dialect.positional:
        return dialect
    found = _POSITIONAL.get(dialect)
    if found is None:
        found = copy.copy(dialect)
        found.paramstyle, found.positional = "format", True
        _POSITIONAL[dialect] = found
    return found


_COMPILED: dict[tuple, _Compiled] = {}
_CURSOR = "authserver.hot_cursor"
_COMPILING = threading.Lock()


def _compiled(statement, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
    keys = tuple(params) if isinstance(statement, Insert) else ()
    key = (statement, dialect.name, keys)
    found = _COMPILED.get(key)
    if found is None:
        with _COMPILING:
            found = _COMPILED.get(key)
            if found is None:
                found = _COMPILED[key] = _Compiled(statement, dialect, keys)
    return found


def _run(statement, params: Mapping[str, Any], *, fetch: bool, turn=None):
    """One statement on a pooled connection, committed on its own; `turn` guards a write."""
    engine: Engine = db.engine
    dialect = engine.dialect
    compiled = _compiled(statement, dialect, params)
    arguments = compiled.arguments(params)
    try:
        pooled = engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:  # no connection to be had: the database is down
        raise sa_exc.DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect,
        ) from error
    connection = pooled.dbapi_connection
    postgresql = dialect.name == "postgresql"
    cursor = None
    try:
        if postgresql:
            connection.autocommit = True
            # psycopg: one cursor per connection, kept with it (a new one costs a tenth of a read).
            kept = pooled.info.get(_CURSOR)
            if kept is None or kept[0] is not connection:
                kept = pooled.info[_CURSOR] = (connection, connection.cursor())
            cursor = kept[1]
        else:
            cursor = connection.cursor()
        listeners = engine.dispatch.before_cursor_execute
        if listeners:  # statement counters and tracers see hot statements too (with no Connection)
            for listener in listeners:
                listener(None, cursor, compiled.sql, arguments, None, False)
        if turn is None:
            cursor.execute(compiled.sql, arguments)
        else:
            with turn():
                if postgresql:
                    cursor.execute(compiled.sql, arguments)
                else:
                    # SQLite in autocommit mode: the statement is its own transaction, one call
                    # into SQLite where BEGIN, the statement and COMMIT would be three (each one
                    # gives up the GIL, and winning it back is what a queued writer waits for).
                    connection.isolation_level = None
                    try:
                        cursor.execute(compiled.sql, arguments)
                    finally:
                        connection.isolation_level = ""
        raw = cursor.fetchone() if fetch else None
        if postgresql:
            connection.autocommit = False
        else:
            cursor.close()
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, connection, cursor)
        if lost:
            pooled.invalidate(error)
        else:
            _restore(connection, postgresql)
        raise sa_exc.DBAPIError.instance(
            compiled.sql, None, error, dialect.loaded_dbapi.Error,
            hide_parameters=True, connection_invalidated=lost, dialect=dialect,
        ) from error
    finally:
        pooled.close()
    return compiled.row(raw) if fetch else None


def _restore(connection, autocommit: bool) -> None:
    """After a failed statement: no open transaction, and the pool's mode, before the pool gets it back."""
    try:
        connection.rollback()
        if autocommit:
            connection.autocommit = False
    except Exception:  # the pool's reset on return deals with a connection in a bad state
        pass


def read_one(statement, params: Mapping[str, Any]):
    """The first row of a prebuilt SELECT (attribute access by column key), or None."""
    return _run(statement, params, fetch=True)


class SqliteWriters:
    """Hot writers to one SQLite file, queued across threads and processes.

    SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
    SQLite's busy handler (1 ms, then longer) even if the lock is free a microsecond
    later. Hot writes (tokens, last-use times) queue instead on a thread lock and an
    flock(2) on a file beside the database, which wake the next writer the moment the
    last commit is done, whichever worker process it is in.
    """

    def __init__(self, database: str | None):
        self.threads = threading.Lock()
        self.path = f"{database}.hot-writers.lock" if database and database != ":memory:" else None
        self.fd: int | None = None

    @contextlib.contextmanager
    def turn(self):
        with self.threads:
            if self.path is None:
                yield
                return
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_WRITERS: weakref.WeakKeyDictionary[Engine, SqliteWriters] = weakref.WeakKeyDictionary()


def write_one(statement, params: Mapping[str, Any]) -> None:
    """Run one prebuilt INSERT or UPDATE and commit it on its own."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        _run(statement, params, fetch=False, turn=contextlib.nullcontext)
        return
    writers = _WRITERS.get(engine)
    if writers is None:
        writers = _WRITERS.setdefault(engine, SqliteWriters(engine.url.database))
    _run(statement, params, fetch=False, turn=writers.turn)


def attach(model, values: Mapping[str, Any], **loaded: Any):
    """A persistent, clean ORM object from column values already read (no second query).

    What the ORM's own loader does with a row: a new instance without __init__ (no change
    events), the values straight into its __dict__ (`loaded` fills relationships), then
    attached to the request's session, so code that changes it and commits still works.
    An object the session already holds is returned as it is.
    """
    session = db.session()
    mapper = model.__mapper__
    key = mapper.identity_key_from_primary_key([values[column.key] for column in mapper.primary_key])
    known = session.identity_map.get(key)
    if known is not None:
        return known
    instance = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    instance.__dict__.update(loaded)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance
