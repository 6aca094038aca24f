"""master key state: which key of the keyring seals now, shared by every instance

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:00:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('master_key_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sealing_key_id', sa.String(length=12), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('changed_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_master_key_state'))
    )


def downgrade():
    op.drop_table('master_key_state')
