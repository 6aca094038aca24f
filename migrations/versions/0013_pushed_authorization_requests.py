"""pushed authorization requests (RFC 9126), and the clients that must push theirs

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 20:00:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'oauth_pushed_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uri_hash', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('opened_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('opener_hash', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uri_hash'),
    )
    op.create_index('ix_oauth_pushed_requests_expires_at', 'oauth_pushed_requests', ['expires_at'])
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_par', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('require_par')
    op.drop_index('ix_oauth_pushed_requests_expires_at', table_name='oauth_pushed_requests')
    op.drop_table('oauth_pushed_requests')
