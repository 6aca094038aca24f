"""Clients: a revision number, raised by the database on every change to a client's row

Workers keep the clients they have read; a hot statement the request runs anyway
confirms that the kept row is still the current one (its revision), so a change made
through any worker or host is seen by all of them on their next request. The revision
is raised by a trigger, so that no writer (an older instance during a rolling upgrade,
a bulk UPDATE, psql) can change a client without it.

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

POSTGRESQL = [
    """CREATE FUNCTION oauth_clients_next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$""",
    """CREATE TRIGGER oauth_clients_revision BEFORE UPDATE ON oauth_clients
FOR EACH ROW EXECUTE FUNCTION oauth_clients_next_revision()""",
]
# SQLite cannot assign NEW in a trigger: after an UPDATE that left the revision as it was,
# raise it (recursive triggers are off, and the WHEN clause would stop a second round anyway).
SQLITE = [
    """CREATE TRIGGER oauth_clients_revision AFTER UPDATE ON oauth_clients
FOR EACH ROW WHEN NEW.revision = OLD.revision
BEGIN
    UPDATE oauth_clients SET revision = OLD.revision + 1 WHERE id = NEW.id;
END""",
]


def upgrade():
    with op.batch_alter_table('oauth_clients') as batch:
        batch.add_column(sa.Column('revision', sa.Integer(), server_default='1', nullable=False))
    for statement in POSTGRESQL if op.get_bind().dialect.name == 'postgresql' else SQLITE:
        op.execute(statement)


def downgrade():
    op.execute('DROP TRIGGER IF EXISTS oauth_clients_revision' +
               (' ON oauth_clients' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS oauth_clients_next_revision()')
    with op.batch_alter_table('oauth_clients') as batch:
        batch.drop_column('revision')
