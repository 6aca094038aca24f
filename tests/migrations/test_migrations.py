"""The schema comes only from the migrations, and the migrations match the models, on both backends."""

from __future__ import annotations

import importlib
import pkgutil
import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from authserver import create_app
from authserver.clock import FixedClock
from authserver.extensions import db
from authserver.schema import downgrade, migrate, register, upgrade
from tests.helpers.database import PG_URL
from tests.helpers.settings import make_settings


def import_every_models_module() -> None:
    """Every `models` module of every capability, even one that authserver/models.py forgot."""
    for package_name in ("authserver", "keyvault"):
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.rsplit(".", 1)[-1] == "models":
                importlib.import_module(info.name)


@pytest.fixture
def empty_database_url(backend, tmp_path):
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    from authserver.settings import check_database_url

    base = make_url(check_database_url(PG_URL))
    name = f"{base.database}_migcheck_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fresh_app(empty_database_url, tmp_path):
    app = create_app(make_settings(tmp_path, empty_database_url), clock=FixedClock())
    import_every_models_module()
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def model_differences() -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, db.metadata)


def test_migrations_have_one_head(tmp_path):
    app = register(create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")))
    with app.app_context():
        heads = ScriptDirectory.from_config(migrate.get_config()).get_heads()
    assert len(heads) == 1, f"the migration history forks: heads {heads}; chain them with down_revision"


def test_upgrade_from_empty_matches_the_models(fresh_app):
    assert inspect(db.engine).get_table_names() == []
    upgrade()
    assert model_differences() == []


def test_downgrade_to_empty_and_upgrade_again(fresh_app):
    upgrade()
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert model_differences() == []


def test_models_without_a_migration_are_noticed(fresh_app):
    from sqlalchemy import Column, Integer, Table

    upgrade()
    extra = Table("not_migrated", db.metadata, Column("id", Integer, primary_key=True))
    try:
        assert [d[0] for d in model_differences()] == ["add_table"]
    finally:
        db.metadata.remove(extra)
