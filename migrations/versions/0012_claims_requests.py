"""codes and tokens: the claims request parameter (OpenID Connect Core 5.5) they were issued with

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claims', sa.JSON(), nullable=True))
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claims', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_column('claims')
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.drop_column('claims')
