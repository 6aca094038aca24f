"""signing keys: published before they sign (activate_at), so relying parties' JWKS caches know them first

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 15:10:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activate_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('oauth_signing_keys', schema=None) as batch_op:
        batch_op.drop_column('activate_at')
