"""client rights and token audiences: first-party, introspection and PKCE flags, extra audiences; token audience and family end; login tickets on codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import authserver.dbtypes


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        # Existing clients are third-party, may not introspect and need PKCE: the strict defaults.
        batch_op.add_column(sa.Column('is_first_party', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('can_introspect', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('pkce_required', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('audiences', sa.JSON(), nullable=True))
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience', sa.String(length=1000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('family_expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('login_ticket', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_oauth_codes_login_ticket'), ['login_ticket'])
    # Tokens issued so far were meant for their own client only.
    op.execute("UPDATE oauth_tokens SET audience = client_id")
    op.execute("UPDATE oauth_clients SET audiences = '[]'")


def downgrade():
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_oauth_codes_login_ticket'), type_='unique')
        batch_op.drop_column('login_ticket')
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_column('family_expires_at')
        batch_op.drop_column('audience')
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('audiences')
        batch_op.drop_column('pkce_required')
        batch_op.drop_column('can_introspect')
        batch_op.drop_column('is_first_party')
