"""The key vault's migration builds exactly what its model declares."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from keyvault.models import ApiKey


def test_api_keys_table_matches_the_model(app, db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, db.metadata)
    ours = [d for d in diffs if "api_keys" in repr(d)]
    assert ours == []


def test_key_id_has_a_unique_index(app, db):
    inspector = inspect(db.engine)
    unique = [set(c["column_names"]) for c in inspector.get_unique_constraints(ApiKey.__tablename__)]
    unique += [set(i["column_names"]) for i in inspector.get_indexes(ApiKey.__tablename__) if i["unique"]]
    assert {"key_id"} in unique
