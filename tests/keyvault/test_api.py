"""The JSON API: owners manage their keys, admins anyone's; scopes never grow."""

import pytest

from authserver.audit.models import AuditEvent
from tests.helpers.factories import DEFAULT_PASSWORD, login, make_key, make_user


def as_key(key):
    return {"X-API-Key": ":".join(key)}


def test_owner_mints_lists_rotates_and_revokes_over_a_session(client, services):
    make_user(services, "alice")
    login(client, "alice")
    minted = client.post("/api/keys", json={"name": "uploader", "scopes": ["photos:write"], "expires_in_days": 30,
                                            "cidrs": ["192.0.2.0/24", "2001:db8::1"]})
    assert minted.status_code == 201
    body = minted.json
    assert body["key_id"].startswith("pkid-") and len(body["secret"]) == 43
    assert body["scopes"] == ["photos:write"] and body["owner"] == "alice"
    assert body["allowed_cidrs"] == ["192.0.2.0/24", "2001:db8::1/128"]
    listed = client.get("/api/keys").json["keys"]
    assert [k["key_id"] for k in listed] == [body["key_id"]]
    assert "secret" not in listed[0] and "secret_hmac" not in listed[0]

    rotated = client.post(f"/api/keys/{body['key_id']}/rotate", json={"grace_seconds": 60})
    assert rotated.status_code == 200
    assert rotated.json["key_id"] == body["key_id"] and rotated.json["secret"] != body["secret"]
    assert rotated.json["previous_secret_valid_until"] is not None

    revoked = client.delete(f"/api/keys/{body['key_id']}")
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked"
    use = client.get("/api/me", headers={"X-API-Key": f"{body['key_id']}:{rotated.json['secret']}"},
                     environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert use.status_code == 401


def test_default_scopes_are_the_owners_without_admin(client, services):
    make_user(services, "root", admin=True)
    login(client, "root")
    body = client.post("/api/keys", json={"name": "default"}).json
    assert body["scopes"] == ["profile", "photos:read", "photos:write"]


@pytest.mark.parametrize("payload,fragment", [
    ({"name": "x", "scopes": ["admin"]}, "administrators only"),
    ({"name": "x", "scopes": ["photos:delete"]}, "Unknown scope"),
    ({"name": "x", "scopes": []}, "at least one scope"),
    ({"name": "", "scopes": ["profile"]}, "name"),
    ({"name": "x", "cidrs": ["10.0.0.300/8"]}, "not an address range"),
    ({"name": "x", "expires_in_days": 0}, "between"),
    ({"name": "x", "scopes": "profile"}, "list"),
    ({"scopes": ["profile"]}, "required"),
])
def test_bad_mint_requests_are_clear_400s(client, services, db, payload, fragment):
    make_user(services, "alice")
    login(client, "alice")
    response = client.post("/api/keys", json=payload)
    assert response.status_code == 400
    assert fragment in response.json["error_description"]
    assert client.get("/api/keys").json["keys"] == []


def test_session_writes_need_json_and_same_origin(client, services):
    make_user(services, "alice")
    login(client, "alice")
    assert client.post("/api/keys", data="name=x").status_code == 415
    cross = client.post("/api/keys", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403


def test_rotate_with_bad_grace_is_400(client, services):
    alice = make_user(services, "alice")
    key_id, _ = make_key(services, alice)
    login(client, "alice")
    for grace in (-1, "60", 10**9):
        assert client.post(f"/api/keys/{key_id}/rotate", json={"grace_seconds": grace}).status_code == 400


def test_owner_cannot_see_or_touch_anothers_key(client, services):
    alice = make_user(services, "alice")
    make_user(services, "mallory")
    key_id, secret = make_key(services, alice)
    login(client, "mallory")
    assert client.get(f"/api/keys/{key_id}").status_code == 404
    assert client.post(f"/api/keys/{key_id}/rotate", json={"grace_seconds": 0}).status_code == 404
    assert client.delete(f"/api/keys/{key_id}").status_code == 404
    assert client.get("/api/keys?user=alice").status_code == 403
    assert client.get("/api/keys?all=1").status_code == 403
    assert client.post("/api/keys", json={"name": "x", "user": "alice"}).status_code == 403
    assert services.keys.verify(key_id, secret, ip=None)


def test_admin_manages_any_users_keys_and_is_audited_as_admin(client, services, db):
    alice = make_user(services, "alice")
    make_user(services, "root", admin=True)
    key_id, _ = make_key(services, alice)
    login(client, "root")
    assert [k["key_id"] for k in client.get("/api/keys?user=alice").json["keys"]] == [key_id]
    assert len(client.get("/api/keys?all=1").json["keys"]) == 1
    minted = client.post("/api/keys", json={"name": "for alice", "user": "alice", "scopes": ["profile"]})
    assert minted.status_code == 201 and minted.json["owner"] == "alice"
    assert client.post("/api/keys", json={"name": "x", "user": "alice", "scopes": ["admin"]}).status_code == 400
    assert client.post(f"/api/keys/{key_id}/rotate", json={"grace_seconds": 0}).status_code == 200
    assert client.delete(f"/api/keys/{key_id}").status_code == 200
    actions = {(e.action, e.actor, e.target) for e in db.session.scalars(db.select(AuditEvent))}
    assert ("admin.key.mint", "user:root", f"key:{minted.json['key_id']}") in actions
    assert ("admin.key.rotate", "user:root", f"key:{key_id}") in actions
    assert ("admin.key.revoke", "user:root", f"key:{key_id}") in actions
    assert client.get("/api/keys?user=nobody").status_code == 404


def test_a_key_without_admin_cannot_use_admin_apis_even_for_an_admin(client, services):
    root = make_user(services, "root", admin=True)
    alice = make_user(services, "alice")
    make_key(services, alice)
    narrow = make_key(services, root, scopes=["profile"])
    assert client.get("/api/me", headers=as_key(narrow)).status_code == 200
    assert client.get("/api/keys?all=1", headers=as_key(narrow)).status_code == 403
    assert client.get("/api/keys?user=alice", headers=as_key(narrow)).status_code == 403
    wide = make_key(services, root, scopes=["admin"])
    assert client.get("/api/keys?all=1", headers=as_key(wide)).status_code == 200


def test_a_narrow_key_cannot_mint_keys(client, services):
    alice = make_user(services, "alice")
    key = make_key(services, alice, scopes=["photos:read"])
    response = client.post("/api/keys", json={"name": "escape"}, headers=as_key(key))
    assert response.status_code == 403
    assert client.delete(f"/api/keys/{key[0]}", headers=as_key(key)).status_code == 403


def test_key_session_is_limited_to_the_keys_scopes(client, services):
    root = make_user(services, "root", admin=True)
    key_id, secret = make_key(services, root, scopes=["photos:read"])
    client.post("/api/session/login", json={"username": key_id, "password": secret})
    assert client.get("/api/keys?all=1").status_code == 403
    client.post("/api/session/login", json={"username": "root", "password": DEFAULT_PASSWORD})
    assert client.get("/api/keys?all=1").status_code == 200


def test_key_writes_need_no_json_content_type_or_origin(client, services):
    root = make_user(services, "root", admin=True)
    key = make_key(services, root, scopes=["admin"])
    target_id, _ = make_key(services, root, name="target")
    response = client.delete(f"/api/keys/{target_id}", headers={**as_key(key), "Origin": "https://elsewhere.example"})
    assert response.status_code == 200


def test_per_key_audit_view(client, services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    services.keys.rotate(services.keys.find(key_id), grace_seconds=0, actor="user:alice")
    client.get("/api/me", headers={"X-API-Key": f"{key_id}:{secret}"})  # the old secret: a failed use
    login(client, "alice")
    events = client.get(f"/api/keys/{key_id}/audit").json["events"]
    assert [e["action"] for e in events] == ["key.use", "key.rotate", "key.mint"]
    assert events[0]["outcome"] == "failure" and events[0]["ip"] == "127.0.0.1"


def test_unknown_and_malformed_key_ids_are_404(client, services):
    make_user(services, "alice")
    login(client, "alice")
    assert client.get("/api/keys/pkid-20260101-AAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert client.delete("/api/keys/nonsense").status_code == 404
    assert client.post("/api/keys/" + "x" * 300 + "/rotate", json={}).status_code == 404


def test_listing_is_bounded(client, services):
    alice = make_user(services, "alice")
    for n in range(3):
        make_key(services, alice, name=f"k{n}")
    login(client, "alice")
    page = client.get("/api/keys?limit=2").json
    assert len(page["keys"]) == 2 and page["truncated"] is True
    assert client.get("/api/keys?limit=3").json["truncated"] is False
    for bad in ("0", "-1", "x", "1001"):
        assert client.get(f"/api/keys?limit={bad}").status_code == 400


def test_unknown_mint_fields_are_refused_not_dropped(client, services):
    """A misspelt option must not give a broader key than asked for (black-box review: "allowed_cidrs")."""
    make_user(services, "alice")
    login(client, "alice")
    unknown = client.post("/api/keys", json={"name": "a", "ip_ranges": ["10.0.0.0/8"]})
    assert unknown.status_code == 400 and "ip_ranges" in unknown.json["error_description"]
    aliased = client.post("/api/keys", json={"name": "b", "allowed_cidrs": ["10.0.0.0/8"]})
    assert aliased.status_code == 201 and aliased.json["allowed_cidrs"] == ["10.0.0.0/8"]
    both = client.post("/api/keys", json={"name": "c", "cidrs": ["10.0.0.0/8"], "allowed_cidrs": ["10.0.0.0/8"]})
    assert both.status_code == 400
    invalid = client.post("/api/keys", json={"name": "d", "allowed_cidrs": ["999.1.1.1/99"]})
    assert invalid.status_code == 400
