"""Single statements for the per-request hot paths: one prebuilt statement, one round trip.

Identity resolution (API keys, session cookies, bearer tokens), introspection and
client_credentials issuance each need one statement. Through the ORM session each
would also pay the session's begin, bookkeeping and close (on PostgreSQL a BEGIN and a
ROLLBACK round trip too), and even a Core execution costs more than the query itself
(on PostgreSQL, measured: 250 µs of CPU against 55 µs for the driver alone, most of
it building the driver's column descriptions for SQLAlchemy's result metadata).

So a hot statement is a Core construct compiled once per dialect, through SQLAlchemy's
public API only: `ClauseElement.compile` into SQL with named parameters, each
parameter's and each column's `TypeEngine` bind and result processors (UTC datetimes,
JSON, booleans on SQLite), and run on a raw DBAPI connection from the engine's pool:
on PostgreSQL in autocommit mode, so a read or a one-row insert is one round trip and
is committed by itself. A row is read into a frozen dataclass of the selected columns,
never into an ORM object: code that must change a row loads it by primary key. Driver
errors become SQLAlchemy's exceptions (a lost connection is invalidated), so the error
layer answers them as for any other query. The engine's events do not see these
statements (no SQLAlchemy Connection runs them); `observed` does.

Nothing is cached here but the compiled SQL: every call reads the database, so a
revocation is seen by every worker on its next request. (Client rows kept by a worker
are confirmed by revision inside the hot statements: oidc/clients.py.) Statements must be prebuilt
(module constants with explicit `bindparam`s): each distinct construct is compiled
once and kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql import Insert
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import iterate

from .extensions import db


class _Compiled:
    """One statement in one dialect: its SQL, how to convert parameters, how to read a row."""

    __slots__ = ("binders", "names", "readers", "record", "sql")

    def __init__(self, statement, dialect: Dialect, keys: tuple[str, ...]):
        # An INSERT of VALUES takes its parameters' types from the table; INSERT ... SELECT,
        # like any other statement, from its typed bindparams.
        insert = isinstance(statement, Insert) and statement.select is None
        if insert:
            columns = statement.table.columns
            missing = [column.key for column in columns if column.key not in keys and column.default is not None]
            if missing:
                raise TypeError(f"hot inserts give every value; missing: {', '.join(missing)}")
            types = {key: columns[key].type for key in keys}
        else:
            types = {}
            for element in iterate(statement):
                if isinstance(element, BindParameter):
                    if not element.key.isidentifier() or isinstance(element.type, NullType):
                        raise TypeError(f"hot statements take named, typed bindparams only; not {element.key!r}")
                    types[element.key] = element.type
        self.names = tuple(types)
        self.sql = statement.compile(dialect=_named(dialect), column_keys=list(keys) if insert else None).string
        self.binders = tuple(
            (name, processor) for name in self.names
            if (processor := types[name].dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        self.record = None
        self.readers: tuple = ()
        if statement.is_select:
            selected = statement.selected_columns
            self.record = dataclasses.make_dataclass("Row", list(selected.keys()), frozen=True, slots=True)
            self.readers = tuple(
                (index, processor)
                for index, column in enumerate(selected)
                if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
            )

    def arguments(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = {name: params[name] for name in self.names}
        for name, processor in self.binders:
            values[name] = processor(values[name])
        return values

    def row(self, raw):
        if raw is None:
            return None
        values = list(raw)
        for index, processor in self.readers:
            values[index] = processor(values[index])
        return self.record(*values)


_NAMED: weakref.WeakKeyDictionary[Dialect, Dialect] = weakref.WeakKeyDictionary()


def _named(dialect: Dialect) -> Dialect:
    """A dialect of the engine's kind that writes named parameters (`:name`, `%(name)s`), which
    every driver here takes with a dict: SQLite's default is positional `?`."""
    if not dialect.positional:
        return dialect
    found = _NAMED.get(dialect)
    if found is None:
        found = _NAMED[dialect] = type(dialect)(paramstyle="named")
    return found


# Callbacks that see the SQL of every hot statement (statement counters in tests, tracers):
# the engine's own events do not fire for raw DBAPI connections.
_OBSERVERS: list[Callable[[str], None]] = []


@contextlib.contextmanager
def observed(callback: Callable[[str], None]):
    """Within the block, `callback(sql)` is called before each hot statement runs."""
    _OBSERVERS.append(callback)
    try:
        yield
    finally:
        _OBSERVERS.remove(callback)


_COMPILED: dict[tuple, _Compiled] = {}
_CURSOR = "authserver.hot_cursor"
_COMPILING = threading.Lock()


def _compiled(statement, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
    keys = tuple(params) if isinstance(statement, Insert) and statement.select is None else ()
    key = (statement, dialect.name, keys)
    found = _COMPILED.get(key)
    if found is None:
        with _COMPILING:
            found = _COMPILED.get(key)
            if found is None:
                found = _COMPILED[key] = _Compiled(statement, dialect, keys)
    return found


def _run(statement, params: Mapping[str, Any], *, fetch: bool, turn=None):
    """One statement on a pooled connection, committed on its own; `turn` guards a write.
    Answers the row read (`fetch`), or the number of rows written."""
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
            # psycopg: one cursor per connection, kept with it (a new one costs a tenth of a read),
            # reading rows in the binary format (a seventh less CPU than parsing text on a key's row;
            # the same values).
            kept = pooled.info.get(_CURSOR)
            if kept is None or kept[0] is not connection:
                kept = pooled.info[_CURSOR] = (connection, connection.cursor(binary=True))
            cursor = kept[1]
        else:
            cursor = connection.cursor()
        for observer in _OBSERVERS:
            observer(compiled.sql)
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
        written = cursor.rowcount
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
    return compiled.row(raw) if fetch else written


def _restore(connection, autocommit: bool) -> None:
    """After a failed statement: no open transaction, and the pool's mode, before the pool gets it back."""
    try:
        connection.rollback()
        if autocommit:
            connection.autocommit = False
    except Exception:  # the pool's reset on return deals with a connection in a bad state
        pass


def read_one(statement, params: Mapping[str, Any]):
    """The first row of a prebuilt SELECT as a frozen dataclass (fields: the column keys), or None."""
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


def write_one(statement, params: Mapping[str, Any]) -> int:
    """Run one prebuilt INSERT or UPDATE and commit it on its own; the number of rows written."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        return _run(statement, params, fetch=False, turn=contextlib.nullcontext)
    writers = _WRITERS.get(engine)
    if writers is None:
        writers = _WRITERS.setdefault(engine, SqliteWriters(engine.url.database))
    return _run(statement, params, fetch=False, turn=writers.turn)
