"""users: OpenID Connect's standard profile claims (given and family name, nickname, picture, website, locale, zoneinfo)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('profile')
