"""What admins see of passkeys and how they remove them: the console, the JSON API, the CLI."""

import json

from sqlalchemy import select

from authserver.audit.models import AuditEvent
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import login, make_user
from tests.helpers.html import browser_login
from tests.helpers.servers import Instance
from tests.helpers.webauthn import SoftAuthenticator


def give_passkeys(services, user, count=2):
    for n in range(count):
        binding = f"session:test-{user.id}-{n}"
        options = services.passkeys.registration_options(user, binding)
        services.passkeys.register(user, binding, SoftAuthenticator().create(options), f"Device {n}", actor="test")


def events(db, action):
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_admin_sees_how_many_passkeys_and_removes_them(client, services, db):
    make_user(services, "root", admin=True)
    dora = make_user(services, "dora")
    give_passkeys(services, dora)
    assert browser_login(client, "root").status_code == 303
    listing = client.get("/admin/users").text
    assert "2 passkeys" in listing
    page = client.get(f"/admin/users/{dora.id}").text
    assert 'id="user-passkeys">2 (Device 0, Device 1)' in page
    unconfirmed = client.post(f"/admin/users/{dora.id}/reset-passkeys", data={"csrf_token": csrf_token(page)})
    assert unconfirmed.status_code == 400 and services.passkeys.count_for(dora) == 2
    done = client.post(f"/admin/users/{dora.id}/reset-passkeys",
                       data={"csrf_token": csrf_token(page), "confirm": "y"})
    assert done.status_code == 303 and services.passkeys.count_for(dora) == 0
    assert [e.actor for e in events(db, "passkey.reset")] == ["user:root"]


def test_admin_api_removes_passkeys_and_only_for_admins(client, services, db):
    make_user(services, "root", admin=True)
    dora = make_user(services, "dora")
    give_passkeys(services, dora, 1)
    make_user(services, "eve")
    login(client, "eve")
    refused = client.post("/api/admin/users/dora/passkeys/reset", json={})
    assert refused.status_code == 403 and services.passkeys.count_for(dora) == 1
    login(client, "root")
    assert client.post("/api/admin/users/nobody/passkeys/reset", json={}).status_code == 404
    done = client.post("/api/admin/users/dora/passkeys/reset", json={})
    assert done.status_code == 200 and done.json == {"username": "dora", "reset": True, "removed": 1}
    assert services.passkeys.count_for(dora) == 0 and len(events(db, "passkey.reset")) == 1


def test_cli_passkey_reset(tmp_path):
    inst = Instance(tmp_path / "instance")
    assert inst.cli("db", "upgrade").returncode == 0
    assert inst.cli("user", "create", "alice", "--email", "alice@photos.example").returncode == 0
    done = inst.cli("passkey", "reset", "alice", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"username": "alice", "reset": True, "removed": 0}
    unknown = inst.cli("passkey", "reset", "nobody")
    assert unknown.returncode != 0 and 'there is no user "nobody"' in unknown.stderr
