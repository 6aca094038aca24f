"""Single statements for the per-request hot paths, on a pooled connection outside the ORM session.

Identity resolution (API keys, session cookies, bearer tokens), introspection and
client_credentials issuance each need one statement. Through the ORM session each
would also pay the session's begin, bookkeeping and close (on PostgreSQL a BEGIN
and a ROLLBACK round trip too). Here a statement runs on a connection of its own:
on PostgreSQL in autocommit mode, so a read or a one-row insert is one round trip
and is committed by itself; on SQLite on a plain connection (switching SQLite's
isolation level per checkout costs more than it saves).

Nothing is cached: every call reads the database, so a revocation is seen by
every worker on its next request.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.engine import Engine
from sqlalchemy.orm import make_transient_to_detached

from .extensions import db

_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _engine() -> Engine:
    engine = db.engine
    hot = _ENGINES.get(engine)
    if hot is None:
        hot = engine.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else engine
        _ENGINES[engine] = hot
    return hot


def read_one(statement, params: Mapping[str, Any]) -> Row | None:
    """The first row of a prebuilt SELECT, or None."""
    with _engine().connect() as conn:
        return conn.execute(statement, params).first()


def write_one(statement, params: Mapping[str, Any]) -> None:
    """Run one prebuilt INSERT or UPDATE and commit it on its own."""
    with _engine().connect() as conn:
        conn.execute(statement, params)
        conn.commit()


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
