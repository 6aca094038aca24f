"""The OIDC tables built by migration 0004 match the models on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext


def test_oidc_models_match_the_migration(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)

    def table_of(change):
        item = change[0] if isinstance(change, list) else change
        for part in item[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else part
            table = getattr(part, "table", None)
            if table is not None:
                return table.name
            if isinstance(name, str) and name.startswith("oauth_"):
                return name
        return ""

    assert [c for c in diff if table_of(c).startswith("oauth_")] == []
