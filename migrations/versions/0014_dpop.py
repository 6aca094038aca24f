"""DPoP (RFC 9449): tokens and codes bound to a key, the proofs already seen, clients that require it

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 20:10:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'oauth_dpop_proofs',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_oauth_dpop_proofs_expires_at', 'oauth_dpop_proofs', ['expires_at'])
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dpop_jkt', sa.String(length=64), nullable=True))
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dpop_jkt', sa.String(length=64), nullable=True))
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_dpop', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('require_dpop')
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.drop_column('dpop_jkt')
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_column('dpop_jkt')
    op.drop_index('ix_oauth_dpop_proofs_expires_at', table_name='oauth_dpop_proofs')
    op.drop_table('oauth_dpop_proofs')
