"""Email: the outbox drained by a worker thread, and the single-use links mailed

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 20:30:00
"""
from alembic import op
import sqlalchemy as sa

import authserver.dbtypes


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'mail_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uid', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body_sealed', sa.Text(), nullable=True),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('claimed_until', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('sent_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('failed_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
        sa.UniqueConstraint('uid', name=op.f('uq_mail_outbox_uid')),
    )
    op.create_index(op.f('ix_mail_outbox_next_attempt_at'), 'mail_outbox', ['next_attempt_at'])
    op.create_table(
        'email_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('binding', sa.String(length=64), nullable=False),
        sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
        sa.Column('used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_links_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_email_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_email_links_token_hash')),
    )
    op.create_index(op.f('ix_email_links_user_id'), 'email_links', ['user_id'])
    op.create_index(op.f('ix_email_links_expires_at'), 'email_links', ['expires_at'])


def downgrade():
    op.drop_index('ix_email_links_expires_at', table_name='email_links')
    op.drop_index('ix_email_links_user_id', table_name='email_links')
    op.drop_table('email_links')
    op.drop_index('ix_mail_outbox_next_attempt_at', table_name='mail_outbox')
    op.drop_table('mail_outbox')
