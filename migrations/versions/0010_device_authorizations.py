"""device authorization grant (RFC 8628): device authorizations awaiting a user's decision

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 17:10:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'oauth_device_authorizations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_code_hash', sa.String(length=64), nullable=False),
        sa.Column('user_code_hmac', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('scope', sa.String(length=1000), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('poll_interval', sa.Integer(), nullable=False),
        sa.Column('last_polled_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('sid', sa.String(length=64), nullable=True),
        sa.Column('auth_time', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('acr', sa.String(length=64), nullable=False),
        sa.Column('amr', sa.JSON(), nullable=False),
        sa.Column('redeemed_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_device_authorizations_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_device_authorizations')),
        sa.UniqueConstraint('device_code_hash', name=op.f('uq_oauth_device_authorizations_device_code_hash')),
        sa.UniqueConstraint('user_code_hmac', name=op.f('uq_oauth_device_authorizations_user_code_hmac')),
    )
    with op.batch_alter_table('oauth_device_authorizations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_device_authorizations_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_device_authorizations_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('oauth_device_authorizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_device_authorizations_expires_at'))
        batch_op.drop_index(batch_op.f('ix_oauth_device_authorizations_client_id'))
    op.drop_table('oauth_device_authorizations')
