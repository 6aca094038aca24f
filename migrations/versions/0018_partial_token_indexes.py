"""Tokens: the refresh-hash, code, user and session indexes only where those are set

A client_credentials token has no refresh token, code, user or session: four index
entries of NULL that every such INSERT wrote and no look-up reads. A look-up by
`column = value` uses the partial index as it used the whole one.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

PARTIAL = (
    ('uq_oauth_tokens_refresh_token_hash', 'refresh_token_hash', True),
    ('ix_oauth_tokens_code_id', 'code_id', False),
    ('ix_oauth_tokens_user_id', 'user_id', False),
    ('ix_oauth_tokens_sid', 'sid', False),
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Built beside the old ones without blocking token writes (CONCURRENTLY, outside the
        # migration's transaction), then swapped in: a large token table is not locked while
        # its indexes are built.
        with op.get_context().autocommit_block():
            for name, column, unique in PARTIAL:
                op.create_index(f'{name}_partial', 'oauth_tokens', [column], unique=unique,
                                postgresql_where=sa.text(f'{column} IS NOT NULL'), postgresql_concurrently=True)
        op.drop_constraint('uq_oauth_tokens_refresh_token_hash', 'oauth_tokens', type_='unique')
        for name, column, unique in PARTIAL[1:]:
            op.drop_index(name, table_name='oauth_tokens')
        for name, column, unique in PARTIAL:
            op.execute(f'ALTER INDEX {name}_partial RENAME TO {name}')
        return
    with op.batch_alter_table('oauth_tokens') as batch:
        batch.drop_constraint('uq_oauth_tokens_refresh_token_hash', type_='unique')
        for name, column, unique in PARTIAL[1:]:
            batch.drop_index(name)
    for name, column, unique in PARTIAL:
        op.create_index(name, 'oauth_tokens', [column], unique=unique, sqlite_where=sa.text(f'{column} IS NOT NULL'))


def downgrade():
    for name, column, unique in PARTIAL:
        op.drop_index(name, table_name='oauth_tokens')
    with op.batch_alter_table('oauth_tokens') as batch:
        batch.create_unique_constraint('uq_oauth_tokens_refresh_token_hash', ['refresh_token_hash'])
        for name, column, unique in PARTIAL[1:]:
            batch.create_index(name, [column])
