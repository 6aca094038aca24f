"""passkeys (WebAuthn): users' credentials and the challenges of ceremonies under way

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 21:00:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'passkeys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.String(length=1400), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('transports', sa.JSON(), nullable=False),
        sa.Column('aaguid', sa.String(length=36), nullable=False),
        sa.Column('backed_up', sa.Boolean(), nullable=False),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_passkeys_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_passkeys')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_passkeys_credential_id')),
    )
    op.create_index(op.f('ix_passkeys_user_id'), 'passkeys', ['user_id'])
    op.create_table(
        'passkey_challenges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('binding', sa.String(length=100), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('challenge', sa.String(length=128), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_passkey_challenges_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_passkey_challenges')),
        sa.UniqueConstraint('binding', name=op.f('uq_passkey_challenges_binding')),
    )
    op.create_index(op.f('ix_passkey_challenges_expires_at'), 'passkey_challenges', ['expires_at'])


def downgrade():
    op.drop_index(op.f('ix_passkey_challenges_expires_at'), table_name='passkey_challenges')
    op.drop_table('passkey_challenges')
    op.drop_index(op.f('ix_passkeys_user_id'), table_name='passkeys')
    op.drop_table('passkeys')
