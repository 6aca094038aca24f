"""broker transactions: login transactions the broker runs for thin clients (handle and state as HMACs, verifier sealed)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:53:21.593748
"""
from alembic import op
import sqlalchemy as sa
import authserver.dbtypes


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('broker_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle_hmac', sa.String(length=64), nullable=False),
    sa.Column('state_hmac', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('code_verifier_sealed', sa.Text(), nullable=True),
    sa.Column('client_code_challenge', sa.String(length=128), nullable=True),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broker_transactions')),
    # The unique constraint is the index callbacks look transactions up through.
    sa.UniqueConstraint('handle_hmac', name=op.f('uq_broker_transactions_handle_hmac'))
    )
    with op.batch_alter_table('broker_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broker_transactions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_broker_transactions_state_hmac'), ['state_hmac'], unique=False)


def downgrade():
    with op.batch_alter_table('broker_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broker_transactions_state_hmac'))
        batch_op.drop_index(batch_op.f('ix_broker_transactions_expires_at'))

    op.drop_table('broker_transactions')
