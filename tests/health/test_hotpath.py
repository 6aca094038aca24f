"""authserver.hotpath: prebuilt statements on raw pooled connections, read back as the ORM reads them."""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from authserver import hotpath
from authserver.accounts.models import User
from authserver.audit.models import AuditEvent
from authserver.hotpath import read_one, write_one

EVENTS = AuditEvent.__table__
INSERT_EVENT = insert(EVENTS)
EVENT_BY_ID = select(EVENTS).where(EVENTS.c.id == bindparam("event_id"))
USER_BY_ID = select(User.__table__).where(User.__table__.c.id == bindparam("user_id"))
AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def event_values(n: int) -> dict:
    return {"id": n, "at": AT, "actor": f"test:{n}", "action": "hot.write", "target": "", "outcome": "success",
            "ip": "192.0.2.1", "user_agent": "", "details": {"n": n, "list": [1, "two"]}}


def test_a_row_reads_back_with_the_orms_types(app, db, services):
    user = services.accounts.create_user("typed", email="typed@photos.example", groups=["family"], is_admin=True)
    db.session.commit()
    row = read_one(USER_BY_ID, {"user_id": user.id})
    orm = db.session.get(User, user.id)
    for column in User.__table__.columns:
        assert getattr(row, column.key) == getattr(orm, column.key), column.key
    assert row.created_at.tzinfo is not None and row.groups == ["family"] and row.is_admin is True
    assert dataclasses.is_dataclass(row)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.username = "changed"  # a row read on the hot path is never written back
    assert read_one(USER_BY_ID, {"user_id": 10**9}) is None


def test_a_write_commits_on_its_own_and_reads_back(app, db):
    write_one(INSERT_EVENT, event_values(1))
    db.session.rollback()  # nothing of the request's own transaction is involved
    row = read_one(EVENT_BY_ID, {"event_id": 1})
    assert (row.at, row.details, row.actor) == (AT, {"n": 1, "list": [1, "two"]}, "test:1")
    assert db.session.get(AuditEvent, 1).details == {"n": 1, "list": [1, "two"]}


def test_a_refused_write_raises_sqlalchemys_error_and_leaves_the_pool_usable(app, db):
    write_one(INSERT_EVENT, event_values(7))
    with pytest.raises(IntegrityError):
        write_one(INSERT_EVENT, event_values(7))  # the same primary key
    for _ in range(12):  # every pooled connection, several times over
        assert read_one(EVENT_BY_ID, {"event_id": 7}).actor == "test:7"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_inserts_give_every_value(app):
    values = event_values(3)
    del values["outcome"]
    with pytest.raises(TypeError, match="missing: outcome"):
        write_one(INSERT_EVENT, values)


def test_writes_from_many_threads_all_land(app, db):
    errors = []

    def writer(first: int):
        with app.app_context():
            try:
                for n in range(first, first + 40):
                    write_one(INSERT_EVENT, event_values(n))
            except Exception as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(100 + 100 * i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 240


def test_sqlite_writers_queue_on_a_private_lock_file_beside_the_database(app, db, backend):
    write_one(INSERT_EVENT, event_values(5))
    writers = hotpath._WRITERS.get(db.engine)
    if backend == "postgresql":
        assert writers is None  # PostgreSQL takes concurrent writers itself
        return
    assert writers.path == f"{db.engine.url.database}.hot-writers.lock"
    assert stat.S_IMODE(os.stat(writers.path).st_mode) == 0o600


def test_observers_see_hot_statements(app, db):
    seen = []
    with hotpath.observed(lambda sql: seen.append(sql.split(None, 1)[0].upper())):
        write_one(INSERT_EVENT, event_values(9))
        read_one(EVENT_BY_ID, {"event_id": 9})
    read_one(EVENT_BY_ID, {"event_id": 9})
    assert seen == ["INSERT", "SELECT"]


def test_hot_statements_take_named_typed_parameters_only(app, db):
    """A parameter the statement cannot type (a bare `bindparam` in VALUES) or an anonymous
    literal would be converted wrongly or not at all: refused when the statement is first run."""
    untyped = EVENTS.update().where(EVENTS.c.id == bindparam("event_id", type_=EVENTS.c.id.type)).values(
        actor=bindparam("actor"))
    with pytest.raises(TypeError, match="typed bindparams"):
        write_one(untyped, {"event_id": 1, "actor": "x"})
    literal = select(EVENTS).where(EVENTS.c.actor == "test:1")
    with pytest.raises(TypeError, match="typed bindparams"):
        read_one(literal, {})
    typed = EVENTS.update().where(EVENTS.c.id == bindparam("event_id", type_=EVENTS.c.id.type)).values(
        at=bindparam("at", type_=EVENTS.c.at.type))
    write_one(INSERT_EVENT, event_values(3))
    write_one(typed, {"event_id": 3, "at": datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)})
    assert read_one(EVENT_BY_ID, {"event_id": 3}).at == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
