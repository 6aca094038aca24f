"""api keys: the key vault's table (secrets stored only as HMACs; key_id unique)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:10:22.195027
"""
from alembic import op
import sqlalchemy as sa
import authserver.dbtypes


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('secret_hmac', sa.String(length=64), nullable=False),
    sa.Column('previous_secret_hmac', sa.String(length=64), nullable=True),
    sa.Column('previous_valid_until', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('allowed_cidrs', sa.JSON(), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('rotated_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    # The unique constraint is the index verification reads through.
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')