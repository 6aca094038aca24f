"""oidc clients codes tokens consents keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:34:13.644457
"""
from alembic import op
import sqlalchemy as sa
import authserver.dbtypes


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('oauth_assertion_jtis',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti', name=op.f('pk_oauth_assertion_jtis'))
    )
    with op.batch_alter_table('oauth_assertion_jtis', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_assertion_jtis_expires_at'), ['expires_at'], unique=False)

    op.create_table('oauth_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hmac', sa.String(length=64), nullable=True),
    sa.Column('secret_sealed', sa.Text(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('post_logout_redirect_uris', sa.JSON(), nullable=False),
    sa.Column('grant_types', sa.JSON(), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('is_public', sa.Boolean(), nullable=False),
    sa.Column('is_trusted', sa.Boolean(), nullable=False),
    sa.Column('is_broker', sa.Boolean(), nullable=False),
    sa.Column('allow_missing_state', sa.Boolean(), nullable=False),
    sa.Column('token_endpoint_auth_method', sa.String(length=40), nullable=False),
    sa.Column('id_token_signed_response_alg', sa.String(length=10), nullable=False),
    sa.Column('access_token_format', sa.String(length=10), nullable=False),
    sa.Column('extra_claims', sa.JSON(), nullable=False),
    sa.Column('backchannel_logout_uri', sa.String(length=2000), nullable=True),
    sa.Column('jwks', sa.JSON(), nullable=True),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_clients')),
    sa.UniqueConstraint('client_id', name=op.f('uq_oauth_clients_client_id'))
    )
    op.create_table('oauth_signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=10), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('retired_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('unpublish_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_oauth_signing_keys'))
    )
    with op.batch_alter_table('oauth_signing_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_signing_keys_alg'), ['alg'], unique=False)

    op.create_table('oauth_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('nonce', sa.String(length=512), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=10), nullable=True),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('auth_time', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=False),
    sa.Column('amr', sa.JSON(), nullable=False),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_oauth_codes_code_hash'))
    )
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_codes_client_nonce', ['client_id', 'nonce'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_codes_user_id'), ['user_id'], unique=False)

    op.create_table('oauth_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('created_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_consents_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_consents')),
    sa.UniqueConstraint('user_id', 'client_id', name='uq_oauth_consents_user_client')
    )
    op.create_table('oauth_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('access_token_hash', sa.String(length=64), nullable=False),
    sa.Column('refresh_token_hash', sa.String(length=64), nullable=True),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('token_format', sa.String(length=10), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('auth_time', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('acr', sa.String(length=64), nullable=False),
    sa.Column('amr', sa.JSON(), nullable=False),
    sa.Column('issued_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('refresh_expires_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('rotated_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', authserver.dbtypes.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_tokens')),
    sa.UniqueConstraint('access_token_hash', name=op.f('uq_oauth_tokens_access_token_hash')),
    sa.UniqueConstraint('refresh_token_hash', name=op.f('uq_oauth_tokens_refresh_token_hash'))
    )
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_tokens_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_tokens_code_id'), ['code_id'], unique=False)
        batch_op.create_index('ix_oauth_tokens_family_id', ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_tokens_sid'), ['sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_tokens_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_sid'))
        batch_op.drop_index('ix_oauth_tokens_family_id')
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_code_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_client_id'))

    op.drop_table('oauth_tokens')
    op.drop_table('oauth_consents')
    with op.batch_alter_table('oauth_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_codes_user_id'))
        batch_op.drop_index('ix_oauth_codes_client_nonce')

    op.drop_table('oauth_codes')
    with op.batch_alter_table('oauth_signing_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_signing_keys_alg'))

    op.drop_table('oauth_signing_keys')
    op.drop_table('oauth_clients')
    with op.batch_alter_table('oauth_assertion_jtis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_assertion_jtis_expires_at'))

    op.drop_table('oauth_assertion_jtis')
