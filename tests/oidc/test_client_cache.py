"""Client rows kept by a worker (oidc/clients.py, `ClientRegistry.decide`).

client_credentials issuance and introspection decide on the calling client's row as the
worker last read it, and the one statement each runs anyway (the token INSERT, the token
read) confirms that the row's revision is still the current one. These tests stand two
apps on one database for two workers: whatever is changed through one, the other must
answer as if it had read the row afresh.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from authserver import create_app, hotpath
from authserver.audit.models import AuditEvent
from authserver.extensions import db
from authserver.oidc.models import OAuthClient, OAuthToken
from tests.helpers.database import counted_statements
from tests.helpers.factories import make_client


def client_credentials(http, client_id, secret, **form):
    return http.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(client_id, secret))


def introspect(http, client_id, secret, token):
    return http.post("/oauth/introspect", data={"token": token}, auth=(client_id, secret))


def tokens_written() -> int:
    return db.session.scalar(select(func.count()).select_from(OAuthToken))


def edit(client_id: str, **values) -> None:
    """Change a client's row through the ORM, as the admin console would."""
    row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    for name, value in values.items():
        setattr(row, name, value)
    db.session.commit()


@pytest.fixture
def other(settings, clock):
    """A second worker on the same database."""
    return create_app(settings, clock=clock).test_client()


@pytest.fixture
def indexer(services):
    return make_client(services, "Indexer", redirect_uris=(), grants=["client_credentials"], scope="photos:read",
                       introspect=True)


def test_once_a_client_is_kept_issuance_and_introspection_send_one_statement_each(client, services, app, indexer):
    resource, secret = indexer
    first = client_credentials(client, resource.client_id, secret)
    assert first.status_code == 200
    token = first.json["access_token"]
    introspect(client, resource.client_id, secret, token)

    with counted_statements(db) as issuing:
        assert client_credentials(client, resource.client_id, secret).status_code == 200
    with counted_statements(db) as introspecting:
        assert introspect(client, resource.client_id, secret, token).json["active"] is True

    assert [sql.split(None, 2)[:2] for sql in issuing] == [["INSERT", "INTO"]], issuing
    assert "revision" in issuing[0]
    assert len(introspecting) == 1 and introspecting[0].startswith("SELECT") and "revision" in introspecting[0]


def test_a_rotated_secret_or_a_deleted_client_is_refused_by_the_introspecting_worker_at_once(
        client, services, other, indexer):
    resource, old_secret = indexer
    token = client_credentials(client, resource.client_id, old_secret).json["access_token"]
    assert introspect(other, resource.client_id, old_secret, token).json["active"] is True  # kept now

    new_secret = services.oidc.clients.rotate_secret(resource.client_id, actor="admin")
    refused = introspect(other, resource.client_id, old_secret, token)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client" and "active" not in refused.json
    assert introspect(other, resource.client_id, new_secret, token).json["active"] is True

    services.oidc.clients.delete(resource.client_id, actor="admin")
    gone = introspect(other, resource.client_id, new_secret, token)
    assert gone.status_code == 401 and gone.json["error"] == "invalid_client"


def test_an_old_secret_on_a_kept_row_gets_no_token_and_one_failure_in_the_audit_log(client, services, other, indexer):
    resource, old_secret = indexer
    assert client_credentials(other, resource.client_id, old_secret).status_code == 200  # the row is kept
    services.oidc.clients.rotate_secret(resource.client_id, actor="admin")
    before = tokens_written()

    refused = client_credentials(other, resource.client_id, old_secret)

    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert tokens_written() == before
    failures = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "client.auth_failed")).all()
    assert len(failures) == 1


def test_a_widened_or_narrowed_registration_is_honoured_by_a_worker_that_kept_the_row(client, other, indexer):
    resource, secret = indexer
    assert client_credentials(other, resource.client_id, secret).status_code == 200  # kept: photos:read
    # A refusal decided on the kept row is not the answer: the row is read afresh.
    edit(resource.client_id, scope="photos:read photos:write")
    widened = client_credentials(other, resource.client_id, secret, scope="photos:write")
    assert widened.status_code == 200 and widened.json["scope"] == "photos:write"
    # A grant decided on the kept row is not written: the INSERT finds the revision moved on.
    edit(resource.client_id, scope="photos:read")
    before = tokens_written()
    narrowed = client_credentials(other, resource.client_id, secret, scope="photos:write")
    assert narrowed.status_code == 400 and narrowed.json["error"] == "invalid_scope"
    assert tokens_written() == before


def test_a_withdrawn_or_granted_introspection_right_is_seen_by_a_worker_that_kept_the_row(client, other, indexer):
    resource, secret = indexer
    token = client_credentials(client, resource.client_id, secret).json["access_token"]
    assert introspect(other, resource.client_id, secret, token).json["active"] is True

    edit(resource.client_id, can_introspect=False)
    withdrawn = introspect(other, resource.client_id, secret, token)
    assert withdrawn.status_code == 400 and withdrawn.json["error"] == "unauthorized_client"

    edit(resource.client_id, can_introspect=True)
    assert introspect(other, resource.client_id, secret, token).json["active"] is True


def changing_the_client(statement_start: str, times: int, change: str):
    """A hot-statement observer that, just before a statement starting with `statement_start`
    runs, changes every client's row with `change` (SQL) through another connection, at most
    `times` times."""
    changed = []

    def observe(sql: str) -> None:
        if sql.startswith(statement_start) and len(changed) < times:
            with db.engine.begin() as conn:
                conn.execute(text(change))
            changed.append(sql)

    return hotpath.observed(observe), changed


@pytest.mark.parametrize("changes", [1, 2], ids=["changed-once", "changed-again"])
def test_a_client_changed_while_its_token_is_issued(client, indexer, changes):
    """Changed between the decision and the INSERT: decided again on the fresh row; changed
    again before that INSERT too: a 503 to retry, and no token written either time."""
    resource, secret = indexer
    assert client_credentials(client, resource.client_id, secret).status_code == 200
    before = tokens_written()
    observing, changed = changing_the_client("INSERT INTO oauth_tokens", changes,
                                             "UPDATE oauth_clients SET name = name")
    with observing:
        answer = client_credentials(client, resource.client_id, secret)
    assert len(changed) == changes
    if changes == 1:
        assert answer.status_code == 200 and tokens_written() == before + 1
    else:
        assert answer.status_code == 503 and answer.json["error"] == "temporarily_unavailable"
        assert tokens_written() == before


def test_a_client_changed_while_it_introspects_is_answered_on_its_fresh_row(client, indexer):
    """Its right to introspect withdrawn just before the token read: refused, as the fresh row says."""
    resource, secret = indexer
    token = client_credentials(client, resource.client_id, secret).json["access_token"]
    assert introspect(client, resource.client_id, secret, token).json["active"] is True
    observing, changed = changing_the_client("SELECT caller.revision", 1,
                                             "UPDATE oauth_clients SET can_introspect = false")
    with observing:
        answer = introspect(client, resource.client_id, secret, token)
    assert len(changed) == 1
    assert answer.status_code == 400 and answer.json["error"] == "unauthorized_client"


def test_a_client_changed_twice_while_it_introspects_is_asked_to_retry(client, indexer):
    resource, secret = indexer
    token = client_credentials(client, resource.client_id, secret).json["access_token"]
    assert introspect(client, resource.client_id, secret, token).json["active"] is True
    observing, changed = changing_the_client("SELECT caller.revision", 2, "UPDATE oauth_clients SET name = name")
    with observing:
        answer = introspect(client, resource.client_id, secret, token)
    assert len(changed) == 2
    assert answer.status_code == 503 and answer.json == {
        "error": "temporarily_unavailable",
        "error_description": "The client's registration changed while this request was answered; send it again."}


def test_every_change_to_a_client_row_raises_its_revision(app, services, indexer):
    """The kept rows are only as good as the revision: secret rotation, re-sealing, deletion
    and any ORM edit raise it (the database's trigger does, migration 0017)."""
    broker, _ = make_client(services, "Broker", broker=True)

    def revision(client_id):
        db.session.expire_all()
        return db.session.scalar(select(OAuthClient.revision).where(OAuthClient.client_id == client_id))

    resource, _ = indexer
    seen = [revision(resource.client_id)]
    services.oidc.clients.rotate_secret(resource.client_id, actor="admin")
    seen.append(revision(resource.client_id))
    edit(resource.client_id, name="Indexer 2")
    seen.append(revision(resource.client_id))
    services.oidc.clients.delete(resource.client_id, actor="admin")
    seen.append(revision(resource.client_id))
    kept = revision(broker.client_id)
    services.oidc.clients.reseal_all(services.sealer)
    db.session.commit()

    assert seen == [1, 2, 3, 4] and revision(broker.client_id) == kept + 1


def test_a_client_row_changed_around_the_server_is_not_trusted_either(client, other, indexer):
    """A change the ORM never sees (psql, a bulk UPDATE, an older instance during a rolling
    upgrade) raises the revision all the same: the trigger is in the database."""
    resource, secret = indexer
    token = client_credentials(client, resource.client_id, secret).json["access_token"]
    assert introspect(other, resource.client_id, secret, token).json["active"] is True  # kept now
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE oauth_clients SET can_introspect = :no WHERE client_id = :id"),
                     {"no": False, "id": resource.client_id})
    refused = introspect(other, resource.client_id, secret, token)
    assert refused.status_code == 400 and refused.json["error"] == "unauthorized_client"
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE oauth_clients SET grant_types = :none WHERE client_id = :id"),
                     {"none": "[]", "id": resource.client_id})
    before = tokens_written()
    assert client_credentials(other, resource.client_id, secret).json["error"] == "unauthorized_client"
    assert tokens_written() == before


def test_a_token_of_a_deleted_client_is_never_active(client, services, indexer):
    """Deleting a client revokes its tokens, and a token written while the deletion was being
    committed (its row not revoked) is refused all the same: every token read joins its client."""
    resource, secret = indexer
    reader, reader_secret = make_client(services, "Reader", redirect_uris=(), grants=["client_credentials"],
                                        scope="photos:read", introspect=True)
    token = client_credentials(client, resource.client_id, secret).json["access_token"]
    with db.engine.begin() as conn:  # the client deleted, its tokens' rows as they were
        conn.execute(text("UPDATE oauth_clients SET disabled_at = :now WHERE client_id = :id"),
                     {"now": "2026-01-01 00:00:00.000000", "id": resource.client_id})
    assert db.session.scalar(select(func.count()).select_from(OAuthToken).where(
        OAuthToken.revoked_at.is_(None))) >= 1
    assert introspect(client, reader.client_id, reader_secret, token).json == {"active": False}
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
