"""totp credentials, recovery codes and pending (half-done) logins

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:11:18.704435
"""
from alembic import op
import sqlalchemy as sa
import authserver.dbtypes


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pending_logins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('next_url', sa.String(length=2000), nullable=False),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pending_logins_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_logins')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_pending_logins_token_hash'))
    )
    with op.batch_alter_table('pending_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_logins_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_pending_logins_user_id'), ['user_id'], unique=False)

    op.create_table('totp_credentials',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('totp_secret_sealed', sa.String(length=255), nullable=True),
    sa.Column('pending_secret_sealed', sa.String(length=255), nullable=True),
    sa.Column('pending_since', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_step', sa.BigInteger(), nullable=False),
    sa.Column('confirmed_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_totp_credentials_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_totp_credentials'))
    )
    op.create_table('totp_recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hmac', sa.String(length=64), nullable=False),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_totp_recovery_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_recovery_codes')),
    sa.UniqueConstraint('code_hmac', name=op.f('uq_totp_recovery_codes_code_hmac'))
    )
    with op.batch_alter_table('totp_recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_totp_recovery_codes_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('totp_recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_totp_recovery_codes_user_id'))

    op.drop_table('totp_recovery_codes')
    op.drop_table('totp_credentials')
    with op.batch_alter_table('pending_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_logins_user_id'))
        batch_op.drop_index(batch_op.f('ix_pending_logins_expires_at'))

    op.drop_table('pending_logins')
