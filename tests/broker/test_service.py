"""The broker service in-process: what is stored, the ID token checks, re-sealing, and the error catalogue."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select, text

from authserver.broker import service as broker_service
from authserver.broker.models import BrokerTransaction
from authserver.broker.service import (
    BrokerError,
    BrokerIdTokenInvalid,
    BrokerNonceMismatch,
    s256,
)
from authserver.crypto import SecretSealer
from tests.helpers.factories import make_client, make_user

DOCS = Path(__file__).resolve().parents[2] / "docs" / "broker-errors.md"


@pytest.fixture
def thin(services):
    client, _ = make_client(services, "Immich app", redirect_uris=["app.immich:///oauth-callback"], public=True,
                            broker=True)
    return client


def start(services, client, **extra):
    return services.broker.start(client_id=client.client_id, redirect_uri="app.immich:///oauth-callback", **extra)


def test_handle_and_state_are_stored_only_as_keyed_hashes_and_the_verifier_sealed(services, db, thin):
    started = start(services, thin)
    row = db.session.scalar(select(BrokerTransaction))
    dump = " ".join(str(v) for v in db.session.execute(text("SELECT * FROM broker_transactions")).one())
    assert started.handle not in dump and started.state not in dump
    challenge = dict(p.split("=", 1) for p in started.authorization_url.split("?", 1)[1].split("&"))["code_challenge"]
    verifier = services.sealer.unseal(row.code_verifier_sealed, b"broker-verifier:" + row.handle_hmac.encode()).decode()
    assert verifier not in dump and s256(verifier) == challenge
    assert (row.expires_at - row.created_at).total_seconds() == 600


def test_each_transaction_is_fresh(services, thin):
    first, second = start(services, thin), start(services, thin)
    assert first.handle != second.handle and first.state != second.state
    assert first.authorization_url != second.authorization_url


def test_expired_transactions_are_purged_a_day_later(services, db, clock, thin):
    start(services, thin)
    first = clock.now()
    clock.advance(days=1)
    start(services, thin)
    assert len(db.session.scalars(select(BrokerTransaction)).all()) == 2, "kept a day after expiry"
    clock.advance(minutes=11)
    start(services, thin)
    remaining = sorted(row.created_at for row in db.session.scalars(select(BrokerTransaction)))
    assert first not in remaining and len(remaining) == 2


def test_master_key_rotation_reseals_open_transactions(services, db, thin):
    start(services, thin)
    assert "broker_verifiers" in services.sealed.names
    new_key = secrets.token_bytes(32)
    rotated = SecretSealer([new_key, *services.settings.master_keys])
    assert services.broker.reseal_all(rotated) == 1
    row = db.session.scalar(select(BrokerTransaction))
    assert SecretSealer([new_key]).unseal(row.code_verifier_sealed, b"broker-verifier:" + row.handle_hmac.encode())


def _id_token(services, claims: dict, key=None) -> str:
    if key is None:
        return services.signing.sign(claims, "RS256")
    return jwt.encode({"alg": "RS256", "kid": "foreign"}, claims, key, algorithms=["RS256"])


@pytest.fixture
def transaction(services, db, thin):
    start(services, thin)
    return db.session.scalar(select(BrokerTransaction))


def claims_for(services, client, tx, **changes) -> dict:
    now = int(services.clock.now().timestamp())
    claims = {"iss": services.oidc.issuer, "sub": "u-1", "aud": client.client_id, "azp": client.client_id,
              "iat": now, "exp": now + 3600, "nonce": tx.nonce}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("changes,foreign,expected", [
    ({}, True, BrokerIdTokenInvalid),
    ({"iss": "https://other.example"}, False, BrokerIdTokenInvalid),
    ({"aud": "someone-else"}, False, BrokerIdTokenInvalid),
    ({"exp": 1}, False, BrokerIdTokenInvalid),
    ({"nonce": "other"}, False, BrokerNonceMismatch),
    ({"nonce": None}, False, BrokerNonceMismatch),
], ids=["foreign-key", "iss", "aud", "expired", "nonce", "no-nonce"])
def test_id_token_checks(services, thin, transaction, changes, foreign, expected):
    user = make_user(services)
    assert user
    key = RSAKey.generate_key(2048, private=True) if foreign else None
    token = {"id_token": _id_token(services, claims_for(services, thin, transaction, **changes), key),
             "access_token": "not-issued"}
    with pytest.raises(expected) as raised:
        services.broker._validated_id_token(thin, transaction, token, "")
    assert raised.value.error in {"id_token_invalid", "nonce_mismatch"}


def test_every_error_is_documented_with_cause_and_fix():
    doc = DOCS.read_text()
    codes = {cls.error for cls in _subclasses(BrokerError)} | set(broker_service.BrokerProviderError.FIXES)
    codes |= {"provider_error", "too_many_requests"}
    for code in sorted(codes):
        assert f"`{code}`" in doc, f"docs/broker-errors.md lacks {code}"
    for cls in _subclasses(BrokerError):
        if "description" in vars(cls):
            assert ":" in cls.description and ";" in cls.description, f"{cls.error}: cause: …; fix"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)
