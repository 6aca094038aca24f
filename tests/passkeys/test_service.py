"""The passkey service with a software authenticator: registration and assertion, and every way an
attacker could bend an answer (origin, rp_id, challenge, replay, counter, another user's credential,
missing user verification, malformed input)."""

import json
import threading

import pytest
from sqlalchemy import select

from authserver.audit.models import AuditEvent
from authserver.passkeys.models import Passkey
from authserver.passkeys.service import ChallengeExpired, PasskeyRejected
from tests.helpers.factories import make_user
from tests.helpers.webauthn import SoftAuthenticator

ADDRESS = "192.0.2.7"


def register(services, user, device=None, binding=None):
    device = device or SoftAuthenticator()
    binding = binding or f"session:test-{user.id}"
    options = services.passkeys.registration_options(user, binding)
    passkey = services.passkeys.register(user, binding, device.create(options), "Phone", actor="test")
    return device, passkey


def second_factor(services, user, device, binding="pending:1", **bend):
    options = services.passkeys.authentication_options(binding, user)
    return services.passkeys.second_factor(user, binding, device.get(options, **bend), address=ADDRESS)


def actions(db):
    return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


# -- registration ---------------------------------------------------------------


def test_registration_options_ask_for_a_discoverable_credential_with_es256_eddsa_rs256(services):
    user = make_user(services, "alice")
    options = services.passkeys.registration_options(user, "session:s1")
    assert options["rp"] == {"id": "localhost", "name": "localhost"}
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert len(options["challenge"]) >= 43  # 32 random bytes


def test_register_keeps_the_credential_and_its_counter(services, db):
    user = make_user(services, "alice")
    device, passkey = register(services, user)
    stored = db.session.scalar(select(Passkey).where(Passkey.user_id == user.id))
    assert stored.name == "Phone" and stored.sign_count == 0 and stored.transports == ["internal"]
    assert "passkey.register" in actions(db)
    second = SoftAuthenticator()
    register(services, user, second)
    assert services.passkeys.count_for(user) == 2  # several passkeys per user


@pytest.mark.parametrize("bend,reason", [
    ({"origin": "http://evil.example"}, "origin"),
    ({"origin": "http://localhost:8080"}, "origin"),
    ({"rp_id": "evil.example"}, "rp_id"),
    ({"challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "invalid"),
])
def test_registration_with_a_bent_answer_is_refused_and_nothing_is_stored(services, bend, reason):
    user = make_user(services, "alice")
    options = services.passkeys.registration_options(user, "session:s1")
    with pytest.raises(PasskeyRejected) as refused:
        services.passkeys.register(user, "session:s1", SoftAuthenticator().create(options, **bend), "x", actor="t")
    assert refused.value.reason == reason
    if reason == "origin":
        assert "another site" in refused.value.description and "http://localhost" in refused.value.description
    assert services.passkeys.count_for(user) == 0


def test_registration_challenge_is_bound_to_the_session_that_asked(services):
    user = make_user(services, "alice")
    options = services.passkeys.registration_options(user, "session:mine")
    with pytest.raises(ChallengeExpired):
        services.passkeys.register(user, "session:other", SoftAuthenticator().create(options), "x", actor="t")


def test_registration_challenge_of_another_user_is_refused(services):
    alice, mallory = make_user(services, "alice"), make_user(services, "mallory")
    options = services.passkeys.registration_options(alice, "session:shared")
    with pytest.raises(ChallengeExpired):
        services.passkeys.register(mallory, "session:shared", SoftAuthenticator().create(options), "x", actor="t")
    assert services.passkeys.count_for(mallory) == 0


def test_registration_challenge_expires_after_five_minutes(services, clock):
    user = make_user(services, "alice")
    options = services.passkeys.registration_options(user, "session:s1")
    clock.advance(seconds=301)
    with pytest.raises(ChallengeExpired):
        services.passkeys.register(user, "session:s1", SoftAuthenticator().create(options), "x", actor="t")


def test_the_same_credential_cannot_be_registered_twice(services):
    alice, bob = make_user(services, "alice"), make_user(services, "bob")
    device, _ = register(services, alice)
    options = services.passkeys.registration_options(bob, "session:b")
    with pytest.raises(PasskeyRejected):
        services.passkeys.register(bob, "session:b", device.create(options), "x", actor="t")
    assert services.passkeys.count_for(bob) == 0


@pytest.mark.parametrize("credential", [
    "", "not json", "[]", "{}", '{"response": 1}', '{"response": {}}',
    '{"id": "x", "response": {"clientDataJSON": "!!!", "attestationObject": "AA"}}',
    '{"id": "x", "response": {"clientDataJSON": "e30", "attestationObject": "oA"}}',
    "x" * 70000,
])
def test_malformed_registration_answers_are_refused_cleanly(services, credential):
    user = make_user(services, "alice")
    services.passkeys.registration_options(user, "session:s1")
    with pytest.raises(PasskeyRejected):
        services.passkeys.register(user, "session:s1", credential, "x", actor="t")


# -- assertion as a second factor ---------------------------------------------------


def test_second_factor_accepts_the_users_passkey_and_moves_the_counter(services, db):
    user = make_user(services, "alice")
    device, passkey = register(services, user)
    assertion = second_factor(services, user, device)
    assert assertion.user.id == user.id and assertion.user_verified
    db.session.refresh(passkey)
    assert passkey.sign_count == 1 and passkey.last_used_at is not None


def test_authentication_options_list_only_the_users_passkeys(services):
    alice, bob = make_user(services, "alice"), make_user(services, "bob")
    device, _ = register(services, alice)
    register(services, bob)
    options = services.passkeys.authentication_options("pending:1", alice)
    from tests.helpers.webauthn import b64url

    assert [c["id"] for c in options["allowCredentials"]] == [b64url(device.credential_id)]


@pytest.mark.parametrize("bend,reason", [
    ({"origin": "http://evil.example"}, "origin"),
    ({"origin": "https://localhost"}, "origin"),
    ({"rp_id": "evil.example"}, "rp_id"),
    ({"challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "invalid"),
])
def test_second_factor_with_a_bent_answer_is_refused_and_audited(services, db, bend, reason):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    with pytest.raises(PasskeyRejected) as refused:
        second_factor(services, user, device, **bend)
    assert refused.value.reason == reason
    assert "passkey.failed" in actions(db)


def test_a_replayed_assertion_is_refused(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("pending:1", user)
    answer = device.get(options)
    services.passkeys.second_factor(user, "pending:1", answer, address=ADDRESS)
    with pytest.raises(ChallengeExpired):  # the challenge was spent
        services.passkeys.second_factor(user, "pending:1", answer, address=ADDRESS)
    services.passkeys.authentication_options("pending:1", user)  # even with a fresh challenge issued
    with pytest.raises(PasskeyRejected):
        services.passkeys.second_factor(user, "pending:1", answer, address=ADDRESS)


def test_a_counter_going_backwards_is_refused_and_audited_as_a_clone(services, db):
    user = make_user(services, "alice")
    device, passkey = register(services, user)
    second_factor(services, user, device, count_step=5)
    with pytest.raises(PasskeyRejected) as refused:
        second_factor(services, user, device, count_step=-2)
    assert refused.value.reason == "counter"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "passkey.counter_regressed"))
    assert event is not None and event.details["stored"] == 5 and event.details["sent"] == 3
    db.session.refresh(passkey)
    assert passkey.sign_count == 5


def test_a_counter_that_stands_still_is_refused_once_it_has_moved(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    second_factor(services, user, device)
    with pytest.raises(PasskeyRejected):
        second_factor(services, user, device, count_step=0)


def test_authenticators_without_a_counter_keep_working(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    for _ in range(2):
        second_factor(services, user, device, count_step=0)


def test_a_passkey_of_another_user_is_refused(services):
    alice, mallory = make_user(services, "alice"), make_user(services, "mallory")
    register(services, alice)
    mallory_device, _ = register(services, mallory)
    with pytest.raises(PasskeyRejected) as refused:
        second_factor(services, alice, mallory_device)
    assert refused.value.reason == "unknown_credential"


def test_a_challenge_issued_for_another_user_is_refused(services):
    alice, mallory = make_user(services, "alice"), make_user(services, "mallory")
    device, _ = register(services, mallory)
    options = services.passkeys.authentication_options("pending:9", alice)
    with pytest.raises(ChallengeExpired):
        services.passkeys.second_factor(mallory, "pending:9", device.get(options), address=ADDRESS)


def test_an_unregistered_passkey_is_refused(services):
    user = make_user(services, "alice")
    register(services, user)
    stranger = SoftAuthenticator()
    with pytest.raises(PasskeyRejected):
        second_factor(services, user, stranger)


def test_a_forged_signature_is_refused(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("pending:1", user)
    answer = json.loads(device.get(options))
    answer["response"]["signature"] = "MEUCIQ" + "A" * 90
    with pytest.raises(PasskeyRejected):
        services.passkeys.second_factor(user, "pending:1", json.dumps(answer), address=ADDRESS)


def test_a_second_factor_without_user_verification_still_counts_but_says_so(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    assert second_factor(services, user, device, uv=False).user_verified is False


def test_second_factor_attempts_are_throttled_with_the_totp_attempts(services, db):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    from authserver.throttle import TooManyAttempts

    with pytest.raises(TooManyAttempts):
        for _ in range(10):
            with pytest.raises(PasskeyRejected):
                second_factor(services, user, device, origin="http://evil.example")
    assert "passkey.throttled" in actions(db)


def test_two_concurrent_uses_of_one_challenge_have_one_winner(services, app):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("pending:1", user)
    answers = [device.get(options) for _ in range(2)]
    user_id = user.id
    outcomes = []

    def use(answer):
        with app.app_context():
            from authserver.accounts.models import User
            from authserver.extensions import db as _db

            try:
                services.passkeys.second_factor(_db.session.get(User, user_id), "pending:1", answer, address=ADDRESS)
                outcomes.append("ok")
            except (ChallengeExpired, PasskeyRejected):
                outcomes.append("refused")
            finally:
                _db.session.remove()

    threads = [threading.Thread(target=use, args=(a,)) for a in answers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused"]


# -- passwordless ----------------------------------------------------------------------


def test_passwordless_needs_a_discoverable_passkey_with_user_verification(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("browser:b1", None)
    assert options["userVerification"] == "required" and options.get("allowCredentials", []) == []
    assertion = services.passkeys.passwordless("browser:b1", device.get(options), address=ADDRESS)
    assert assertion.user.id == user.id and assertion.user_verified


def test_passwordless_without_user_verification_is_refused(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("browser:b1", None)
    with pytest.raises(PasskeyRejected) as refused:
        services.passkeys.passwordless("browser:b1", device.get(options, uv=False), address=ADDRESS)
    assert refused.value.reason == "user_verification"
    assert "verify you" in refused.value.description


def test_passwordless_refuses_a_user_handle_of_someone_else(services):
    alice, bob = make_user(services, "alice"), make_user(services, "bob")
    device, _ = register(services, alice)
    register(services, bob, SoftAuthenticator())
    options = services.passkeys.authentication_options("browser:b1", None)
    answer = json.loads(device.get(options))
    from tests.helpers.webauthn import b64url

    answer["response"]["userHandle"] = b64url(bob.sub.encode())
    with pytest.raises(PasskeyRejected):
        services.passkeys.passwordless("browser:b1", json.dumps(answer), address=ADDRESS)


def test_passwordless_challenge_is_bound_to_its_browser(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("browser:victim", None)
    with pytest.raises(ChallengeExpired):
        services.passkeys.passwordless("browser:attacker", device.get(options), address=ADDRESS)


def test_a_second_factor_challenge_cannot_be_used_passwordless(services):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.authentication_options("browser:b1", user)
    with pytest.raises(ChallengeExpired):
        services.passkeys.passwordless("browser:b1", device.get(options), address=ADDRESS)


def test_a_disabled_users_passkey_is_refused(services, db):
    user = make_user(services, "alice")
    device, _ = register(services, user)
    user.is_disabled = True
    db.session.commit()
    options = services.passkeys.authentication_options("browser:b1", None)
    with pytest.raises(PasskeyRejected):
        services.passkeys.passwordless("browser:b1", device.get(options), address=ADDRESS)


# -- removal ------------------------------------------------------------------------------


def test_remove_and_reset_are_audited_and_only_touch_the_owner(services, db):
    from authserver.passkeys.service import PasskeyNotFound

    alice, bob = make_user(services, "alice"), make_user(services, "bob")
    _, alices = register(services, alice)
    _, bobs = register(services, bob)
    with pytest.raises(PasskeyNotFound):
        services.passkeys.remove(alice, bobs.id, actor="user:alice")
    services.passkeys.remove(alice, alices.id, actor="user:alice")
    assert services.passkeys.count_for(alice) == 0 and services.passkeys.count_for(bob) == 1
    assert services.passkeys.reset(bob, actor="user:admin") == 1
    assert {"passkey.remove", "passkey.reset"} <= set(actions(db))


def test_policy_lets_totp_go_when_a_passkey_remains(services):
    from authserver.totp.service import TotpRequiredByPolicy
    from tests.helpers.factories import enrol_totp

    user = make_user(services, "alice")
    device, _ = enrol_totp(services, user)
    services.totp.required = "all"
    with pytest.raises(TotpRequiredByPolicy):
        services.totp.disable(user, code=device.code(), actor="user:alice", address=ADDRESS)
    register(services, user)
    services.totp.disable(user, code=device.code(), actor="user:alice", address=ADDRESS)
    assert not services.totp.is_enrolled(user)


DEEP = "[" * 3000 + "]" * 3000


def _with_client_data(answer: str, client_data: bytes) -> str:
    from tests.helpers.webauthn import b64url

    parsed = json.loads(answer)
    parsed["response"]["clientDataJSON"] = b64url(client_data)
    return json.dumps(parsed)


def test_deeply_nested_answers_are_refused_as_malformed_not_a_500(services):
    """The black-box review's 500s: nesting past the recursion limit in the answer or in its
    clientDataJSON, at registration, the second step and passwordless."""
    user = make_user(services, "alice")
    device, _ = register(services, user)
    options = services.passkeys.registration_options(user, "session:deep")
    for answer in (DEEP, _with_client_data(SoftAuthenticator().create(options), DEEP.encode())):
        with pytest.raises(PasskeyRejected):
            services.passkeys.register(user, "session:deep", answer, "Deep", actor="test")
        options = services.passkeys.registration_options(user, "session:deep")
    for purpose in ("second", "passwordless"):
        for answer in (DEEP, _with_client_data(device.get(services.passkeys.authentication_options(
                f"pending:{purpose}", user)), DEEP.encode())):
            with pytest.raises(PasskeyRejected):
                if purpose == "second":
                    services.passkeys.authentication_options(f"pending:{purpose}", user)
                    services.passkeys.second_factor(user, f"pending:{purpose}", answer, address=ADDRESS)
                else:
                    services.passkeys.authentication_options("browser:x", None)
                    services.passkeys.passwordless("browser:x", answer, address=ADDRESS)


class BadKeyAuthenticator(SoftAuthenticator):
    """An authenticator whose public key can never verify (what a forged registration sends)."""

    def __init__(self, cose: bytes):
        super().__init__()
        self._cose = cose

    def cose_key(self) -> bytes:
        return self._cose


@pytest.mark.parametrize("cose", [
    pytest.param({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}, id="EC point off the curve"),
    pytest.param({1: 2, 3: -7, -1: 2, -2: b"\x01" * 48, -3: b"\x02" * 48}, id="P-384 labelled ES256"),
    pytest.param({1: 3, 3: -257, -1: b"\xc1" * 256, -2: b"\x01"}, id="RSA with e=1"),
    pytest.param({1: 1, 3: -8, -1: 6, -2: b"\x01" * 5}, id="Ed25519 of the wrong length"),
    pytest.param([1, 2, 3], id="not a map"),
])
def test_a_public_key_that_can_never_verify_is_not_registered(services, db, cose):
    import cbor2

    user = make_user(services, "alice")
    options = services.passkeys.registration_options(user, "session:bad")
    answer = BadKeyAuthenticator(cbor2.dumps(cose)).create(options)
    with pytest.raises(PasskeyRejected):
        services.passkeys.register(user, "session:bad", answer, "Bad", actor="test")
    assert db.session.scalar(select(Passkey).where(Passkey.user_id == user.id)) is None


def test_passkey_names_lose_control_and_direction_characters(services):
    user = make_user(services, "alice")
    device = SoftAuthenticator()
    options = services.passkeys.registration_options(user, "session:n")
    passkey = services.passkeys.register(user, "session:n", device.create(options), "Pho\u202ene\x00 \tmine",
                                         actor="test")
    assert passkey.name == "Phone mine"
