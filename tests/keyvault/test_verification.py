"""Verifying keys: format first, then one indexed read and one HMAC; rotation, revocation, expiry, ranges."""

import threading

import pytest
from sqlalchemy import select

from authserver.crypto import keyed_hash
from keyvault import keyformat
from keyvault.models import ApiKey
from keyvault.service import (
    InvalidKey,
    KeyAddressDenied,
    KeyConflict,
    KeyExpired,
    KeyMalformed,
    KeyRevoked,
    KeySecretMismatch,
    KeyUnknown,
    address_allowed,
)
from tests.helpers.database import counted_statements
from tests.helpers.factories import make_key, make_user


def one_character_changed(text: str, position: int) -> str:
    replacement = "0" if text[position] != "0" else "1"
    return text[:position] + replacement + text[position + 1:]


def test_valid_key_verifies_as_its_owner_with_its_scopes(services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["photos:read"])
    verified = services.keys.verify(key_id, secret, ip="192.0.2.1")
    assert verified.user.username == "alice"
    assert verified.scopes == frozenset({"photos:read"})


@pytest.mark.parametrize("position", [0, 20, 36, 37, 42])
def test_one_character_change_of_the_secret_is_rejected_without_a_query(services, db, position):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    db.session.remove()
    with counted_statements(db) as statements, pytest.raises(KeyMalformed):
        services.keys.verify(key_id, one_character_changed(secret, position), ip="192.0.2.1")
    assert statements == []


def test_malformed_key_id_is_rejected_without_a_query(services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    db.session.remove()
    with counted_statements(db) as statements:
        with pytest.raises(KeyMalformed):
            services.keys.verify(key_id[:-1], secret, ip=None)
        with pytest.raises(KeyMalformed):
            services.keys.verify(key_id.replace("pkid-", "pkid_"), secret, ip=None)
    assert statements == []


def test_verification_is_one_indexed_read_by_key_id(services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    db.session.remove()
    with counted_statements(db) as statements:
        services.keys.verify(key_id, secret, ip=None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "api_keys.key_id =" in selects[0]
    assert not [s for s in statements if not s.lstrip().upper().startswith("SELECT")]


def test_only_the_hmac_of_the_secret_is_stored(services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    row = db.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    assert row.secret_hmac == keyed_hash(services.settings.pepper, secret)
    stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
    assert secret not in stored


def test_well_formed_but_unknown_or_wrong_secret_is_refused(services):
    alice = make_user(services, "alice")
    key_id, _ = make_key(services, alice)
    with pytest.raises(KeySecretMismatch):
        services.keys.verify(key_id, keyformat.new_secret(), ip=None)
    with pytest.raises(KeyUnknown):
        services.keys.verify(keyformat.new_key_id(services.clock.now().date()), keyformat.new_secret(), ip=None)


def test_expired_key_is_refused(services, clock):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, expires_in_days=2)
    clock.advance(days=2, seconds=-1)
    services.keys.verify(key_id, secret, ip=None)
    clock.advance(seconds=1)
    with pytest.raises(KeyExpired):
        services.keys.verify(key_id, secret, ip=None)


def test_revoked_key_is_refused_on_the_next_verification(services, db):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice)
    services.keys.verify(key_id, secret, ip=None)
    services.keys.revoke(services.keys.find(key_id), actor="test")
    with pytest.raises(KeyRevoked):
        services.keys.verify(key_id, secret, ip=None)


@pytest.mark.parametrize("cidrs,ip,allowed", [
    (["192.0.2.0/24"], "192.0.2.77", True),
    (["192.0.2.0/24"], "198.51.100.1", False),
    (["192.0.2.0/24"], "::ffff:192.0.2.9", True),
    (["2001:db8::/32"], "2001:db8:1::5", True),
    (["2001:db8::/32"], "2001:db9::5", False),
    (["2001:db8::/32", "10.0.0.0/8"], "10.1.2.3", True),
    (["198.51.100.7"], "198.51.100.7", True),
    (["198.51.100.7"], "198.51.100.8", False),
    (["192.0.2.0/24"], "", False),
    (["192.0.2.0/24"], "not-an-address", False),
])
def test_address_ranges(cidrs, ip, allowed):
    assert address_allowed(ip, cidrs) is allowed


def test_key_limited_to_ranges_is_refused_elsewhere(services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, cidrs=["192.0.2.0/24", "2001:db8::/32"])
    services.keys.verify(key_id, secret, ip="192.0.2.10")
    services.keys.verify(key_id, secret, ip="2001:db8::10")
    with pytest.raises(KeyAddressDenied):
        services.keys.verify(key_id, secret, ip="203.0.113.5")
    with pytest.raises(KeyAddressDenied):
        services.keys.verify(key_id, secret, ip=None)


def test_rotation_with_grace_keeps_the_old_secret_until_the_grace_ends(services, clock):
    alice = make_user(services, "alice")
    key_id, old = make_key(services, alice)
    rotated = services.keys.rotate(services.keys.find(key_id), grace_seconds=300, actor="test")
    assert rotated.key_id == key_id and rotated.secret != old
    services.keys.verify(key_id, rotated.secret, ip=None)
    clock.advance(seconds=299)
    services.keys.verify(key_id, old, ip=None)
    clock.advance(seconds=1)
    with pytest.raises(KeySecretMismatch):
        services.keys.verify(key_id, old, ip=None)
    services.keys.verify(key_id, rotated.secret, ip=None)


def test_rotation_without_grace_ends_the_old_secret_at_once(services):
    alice = make_user(services, "alice")
    key_id, old = make_key(services, alice)
    rotated = services.keys.rotate(services.keys.find(key_id), grace_seconds=0, actor="test")
    with pytest.raises(KeySecretMismatch):
        services.keys.verify(key_id, old, ip=None)
    services.keys.verify(key_id, rotated.secret, ip=None)


def test_revocation_also_ends_the_grace_secret(services):
    alice = make_user(services, "alice")
    key_id, old = make_key(services, alice)
    rotated = services.keys.rotate(services.keys.find(key_id), grace_seconds=600, actor="test")
    services.keys.revoke(services.keys.find(key_id), actor="test")
    for secret in (old, rotated.secret):
        with pytest.raises(InvalidKey):
            services.keys.verify(key_id, secret, ip=None)


def test_two_simultaneous_rotations_have_one_winner(app, services, db):
    alice = make_user(services, "alice")
    key_id, _ = make_key(services, alice)
    db.session.remove()
    barrier = threading.Barrier(2)
    outcomes = []

    def rotate():
        with app.app_context():
            key = services.keys.find(key_id)
            barrier.wait()
            try:
                outcomes.append(services.keys.rotate(key, grace_seconds=0, actor="test").secret)
            except KeyConflict:
                outcomes.append(None)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [s for s in outcomes if s]
    assert len(winners) == 1
    services.keys.verify(key_id, winners[0], ip=None)


def test_a_demoted_admins_key_loses_the_admin_scope(services, db):
    boss = make_user(services, "boss", admin=True)
    key_id, secret = make_key(services, boss, scopes=["admin", "profile"])
    assert services.keys.verify(key_id, secret, ip=None).scopes == {"admin", "profile"}
    boss.is_admin = False
    db.session.commit()
    assert services.keys.verify(key_id, secret, ip=None).scopes == {"profile"}


def test_introspection_of_a_valid_key_gives_rfc7662_fields(services, clock):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, scopes=["profile", "photos:read"], expires_in_days=1)
    answer = services.keys.introspect(f"{key_id}:{secret}", caller_address="198.51.100.7")
    assert answer["active"] is True
    assert answer["scope"] == "profile photos:read"
    assert answer["sub"] == alice.sub and answer["username"] == "alice"
    assert answer["token_type"] == "api_key" and answer["client_id"] is None
    assert answer["iat"] == int(clock.now().timestamp())
    assert answer["exp"] == int(clock.now().timestamp()) + 86400
    assert secret not in str(answer)


def test_introspection_of_bad_tokens_is_none(services):
    alice = make_user(services, "alice")
    key_id, secret = make_key(services, alice, cidrs=["192.0.2.0/24"])
    other_id, other_secret = make_key(services, alice)
    services.keys.revoke(services.keys.find(other_id), actor="test")
    service = "198.51.100.7"
    assert services.keys.introspect(f"{other_id}:{other_secret}", caller_address=service) is None
    assert services.keys.introspect(f"{key_id}:{secret[:-1]}", caller_address=service) is None
    assert services.keys.introspect("garbage", caller_address=service) is None
    # A range-limited key is never active through introspection: the service's address is not the holder's.
    assert services.keys.introspect(f"{key_id}:{secret}", caller_address="192.0.2.4") is None
