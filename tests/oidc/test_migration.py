"""The OIDC tables built by the migrations match the models on both backends."""

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text


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


PARTIAL = {"uq_oauth_tokens_refresh_token_hash": "refresh_token_hash", "ix_oauth_tokens_code_id": "code_id",
           "ix_oauth_tokens_user_id": "user_id", "ix_oauth_tokens_sid": "sid"}


def test_token_indexes_leave_out_what_a_client_credentials_token_has_not(db):
    """Migration 0018: a token without refresh token, code, user or session adds no entry to
    those four indexes, and a look-up by `column = value` still finds its index (SQLite's plan
    says so; PostgreSQL's planner proves `column = $1` implies `column IS NOT NULL` likewise)."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            found = dict(conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'oauth_tokens'")).all())
        else:
            found = dict(conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'oauth_tokens'")).all())
            for name, column in PARTIAL.items():
                plan = conn.execute(text(f"EXPLAIN QUERY PLAN SELECT id FROM oauth_tokens WHERE {column} = :v"),
                                    {"v": "x"}).all()
                assert any(name in str(step) for step in plan), plan
    for name, column in PARTIAL.items():
        assert re.search(rf"WHERE \(?{column} IS NOT NULL\)?", found[name]), found[name]
    assert "UNIQUE" in found["uq_oauth_tokens_refresh_token_hash"].upper()
    # No whole index, nor the old UNIQUE constraint, is left beside them on those columns.
    inspector = inspect(db.engine)
    columns = set(PARTIAL.values())
    assert [c for c in inspector.get_unique_constraints("oauth_tokens") if set(c["column_names"]) & columns] == []
    on_those = sorted(i["name"] for i in inspector.get_indexes("oauth_tokens") if set(i["column_names"]) & columns)
    assert on_those == sorted(PARTIAL)
