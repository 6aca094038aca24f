"""Clients: a revision number, raised by every change to a client's row

Workers keep the clients they have read; a hot statement the request runs anyway
confirms that the kept row is still the current one (its revision), so a change made
through any worker or host is seen by all of them on their next request.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_clients') as batch:
        batch.add_column(sa.Column('revision', sa.Integer(), server_default='1', nullable=False))


def downgrade():
    with op.batch_alter_table('oauth_clients') as batch:
        batch.drop_column('revision')
