"""TotpService on both backends: enrolment, one use per time step, recovery codes, sealing."""

import threading

import pytest
from sqlalchemy import text

from authserver.accounts.models import User
from authserver.audit.models import AuditEvent
from authserver.crypto import SealError
from authserver.totp.service import (
    CurrentFactorRequired,
    InvalidRecoveryCode,
    InvalidTotpCode,
    NoPendingEnrolment,
    TotpNotEnrolled,
    TotpRequiredByPolicy,
)
from tests.helpers.factories import Authenticator, enrol_totp, make_user

ADDRESS = "192.0.2.10"


def actions(db, outcome=None):
    stmt = db.select(AuditEvent.action).order_by(AuditEvent.id)
    if outcome:
        stmt = stmt.where(AuditEvent.outcome == outcome)
    return list(db.session.scalars(stmt))


def test_enrolment_is_pending_until_a_correct_code_confirms_it(services, clock):
    user = make_user(services, "alice")
    enrolment = services.totp.begin_enrolment(user, actor="user:alice")
    device = Authenticator(enrolment.secret, clock)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/localhost:alice?secret=")
    assert enrolment.qr_svg.startswith("<svg")
    assert not services.totp.is_enrolled(user)
    assert services.totp.status(user).pending

    with pytest.raises(InvalidTotpCode):
        services.totp.confirm_enrolment(user, device.code(steps=3), actor="user:alice", address=ADDRESS)
    assert not services.totp.is_enrolled(user)
    with pytest.raises(TotpNotEnrolled):  # a pending secret does not log anyone in
        services.totp.verify(user, device.code())

    codes = services.totp.confirm_enrolment(user, device.code(), actor="user:alice", address=ADDRESS)
    assert len(codes) == 10
    status = services.totp.status(user)
    assert status.enabled and not status.pending and status.recovery_codes_left == 10
    with pytest.raises(NoPendingEnrolment):
        services.totp.confirm_enrolment(user, device.code(), actor="user:alice", address=ADDRESS)


def test_the_confirming_code_cannot_be_replayed_to_log_in(services, clock):
    user = make_user(services)
    enrolment = services.totp.begin_enrolment(user, actor="test")
    device = Authenticator(enrolment.secret, clock)
    services.totp.confirm_enrolment(user, device.code(), actor="test", address=ADDRESS)
    with pytest.raises(InvalidTotpCode):
        services.totp.verify(user, device.code())


def test_pending_enrolment_expires(services, clock):
    user = make_user(services)
    enrolment = services.totp.begin_enrolment(user, actor="test")
    clock.advance(hours=1, seconds=1)
    with pytest.raises(NoPendingEnrolment):
        services.totp.confirm_enrolment(user, Authenticator(enrolment.secret, clock).code(), actor="test",
                                        address=ADDRESS)


def test_a_code_works_once_and_its_replay_fails(services, clock):
    user = make_user(services)
    device, _ = enrol_totp(services, user)
    code = device.code()
    step = services.totp.verify(user, code)
    assert step == int(clock.now().timestamp()) // 30
    with pytest.raises(InvalidTotpCode) as replay:
        services.totp.verify(user, code)
    assert replay.value.reason == "reused"
    clock.advance(seconds=30)
    assert services.totp.verify(user, device.code()) == step + 1


def test_an_older_step_is_refused_after_a_newer_one(services, clock):
    user = make_user(services)
    device, _ = enrol_totp(services, user)
    services.totp.verify(user, device.code(steps=1))
    with pytest.raises(InvalidTotpCode):
        services.totp.verify(user, device.code())


@pytest.mark.parametrize("steps,accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_one_step_of_clock_skew(services, clock, steps, accepted):
    user = make_user(services)
    device, _ = enrol_totp(services, user)
    clock.advance(seconds=5 * 30)  # room below for the negative offsets
    code = device.code(steps=steps)
    if accepted:
        services.totp.verify(user, code)
    else:
        with pytest.raises(InvalidTotpCode):
            services.totp.verify(user, code)


def run_concurrently(app, count, work):
    """`work(i)` in `count` threads released together, each with its own app context and session."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        with app.app_context():
            barrier.wait()
            try:
                results[i] = work(i)
            except Exception as exc:  # noqa: BLE001  (collected and asserted by the test)
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_submissions_of_one_code_have_one_winner(app, services, db):
    user = make_user(services)
    device, _ = enrol_totp(services, user)
    code, user_id = device.code(), user.id

    def submit(_):
        return services.totp.verify(db.session.get(User, user_id), code)

    results = run_concurrently(app, 8, submit)
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, InvalidTotpCode)]
    assert len(winners) == 1 and len(losers) == 7, results


def test_re_enrolment_replaces_the_old_secret_only_on_confirmation(services, clock):
    user = make_user(services)
    old_device, _ = enrol_totp(services, user)
    with pytest.raises(CurrentFactorRequired):
        services.totp.begin_enrolment(user, actor="test")
    enrolment = services.totp.begin_enrolment(user, actor="test", proof={"code": old_device.code()}, address=ADDRESS)
    new_device = Authenticator(enrolment.secret, clock)
    clock.advance(seconds=30)
    services.totp.verify(user, old_device.code())  # the old secret still works while the new one is pending
    clock.advance(seconds=30)
    services.totp.confirm_enrolment(user, new_device.code(), actor="test", address=ADDRESS)
    clock.advance(seconds=30)
    with pytest.raises(InvalidTotpCode):
        services.totp.verify(user, old_device.code())
    services.totp.verify(user, new_device.code())


def test_recovery_code_works_once(services):
    user = make_user(services)
    _, codes = enrol_totp(services, user)
    services.totp.use_recovery_code(user, codes[0].lower().replace("-", " "))
    with pytest.raises(InvalidRecoveryCode):
        services.totp.use_recovery_code(user, codes[0])
    assert services.totp.status(user).recovery_codes_left == 9


def test_recovery_codes_belong_to_their_user(services):
    alice, bob = make_user(services), make_user(services)
    _, alice_codes = enrol_totp(services, alice)
    enrol_totp(services, bob)
    with pytest.raises(InvalidRecoveryCode):
        services.totp.use_recovery_code(bob, alice_codes[0])


def test_concurrent_uses_of_one_recovery_code_have_one_winner(app, services, db):
    user = make_user(services)
    _, codes = enrol_totp(services, user)
    user_id = user.id

    def use(_):
        return services.totp.use_recovery_code(db.session.get(User, user_id), codes[3]) or "used"

    results = run_concurrently(app, 8, use)
    assert results.count("used") == 1
    assert sum(isinstance(r, InvalidRecoveryCode) for r in results) == 7, results


def test_regenerating_recovery_codes_invalidates_the_old_set(services, clock):
    user = make_user(services)
    device, old_codes = enrol_totp(services, user)
    new_codes = services.totp.regenerate_recovery_codes(user, code=device.code(), actor="test", address=ADDRESS)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    with pytest.raises(InvalidRecoveryCode):
        services.totp.use_recovery_code(user, old_codes[1])
    services.totp.use_recovery_code(user, new_codes[1])


def test_recovery_codes_are_stored_as_keyed_hashes(services, db):
    user = make_user(services)
    _, codes = enrol_totp(services, user)
    stored = db.session.execute(text("SELECT code_hmac FROM totp_recovery_codes")).scalars().all()
    assert len(stored) == 10
    dump = " ".join(stored)
    for code in codes:
        assert code not in dump and code.replace("-", "") not in dump


def test_secrets_in_the_database_are_ciphertext_bound_to_the_user(services, db):
    alice, bob = make_user(services, "alice"), make_user(services, "bob")
    device, _ = enrol_totp(services, alice)
    enrol_totp(services, bob)
    # A pending one too:
    services.totp.begin_enrolment(alice, actor="test", proof={"code": device.code()}, address=ADDRESS)
    rows = db.session.execute(text(
        "SELECT user_id, totp_secret_sealed, pending_secret_sealed FROM totp_credentials ORDER BY user_id"
    )).all()
    secret_text = device.totp.secret
    for _, active, pending in rows:
        for value in filter(None, (active, pending)):
            assert value.startswith(f"v1.{services.sealer.current_key_id}.")
            assert secret_text not in value
    # Copied to another user's row, a sealed secret does not open: the user id is associated data.
    alice_sealed = rows[0][1]
    with pytest.raises(SealError):
        services.sealer.unseal(alice_sealed, f"totp-secret:user:{bob.id}".encode())


def test_disable_needs_a_current_code_and_is_refused_under_policy(services, clock):
    user = make_user(services)
    device, _ = enrol_totp(services, user)
    with pytest.raises(InvalidTotpCode):
        services.totp.disable(user, code="000000" if device.code() != "000000" else "111111",
                              actor="test", address=ADDRESS)
    assert services.totp.is_enrolled(user)
    services.totp.required = "all"
    with pytest.raises(TotpRequiredByPolicy):
        services.totp.disable(user, code=device.code(), actor="test", address=ADDRESS)
    services.totp.required = "none"
    services.totp.disable(user, code=device.code(), actor="test", address=ADDRESS)
    assert not services.totp.is_enrolled(user)
    assert services.totp.status(user).recovery_codes_left == 0


@pytest.mark.parametrize("policy,admin,required", [
    ("none", True, False), ("admins", False, False), ("admins", True, True), ("all", False, True),
])
def test_policy_covers_the_right_users(services, policy, admin, required):
    services.totp.required = policy
    assert services.totp.is_required_for(make_user(services, admin=admin)) is required


def test_reset_removes_secret_and_recovery_codes(services, db):
    user = make_user(services)
    _, codes = enrol_totp(services, user)
    assert services.totp.reset(user, actor="user:admin") is True
    assert not services.totp.is_enrolled(user)
    with pytest.raises(InvalidRecoveryCode):
        services.totp.use_recovery_code(user, codes[0])
    assert services.totp.reset(user, actor="user:admin") is False


def test_every_change_and_failure_is_audited(services, db, clock):
    user = make_user(services)
    enrolment = services.totp.begin_enrolment(user, actor="user:u")
    device = Authenticator(enrolment.secret, clock)
    with pytest.raises(InvalidTotpCode):
        services.totp.confirm_enrolment(user, device.code(steps=5), actor="user:u", address=ADDRESS)
    codes = services.totp.confirm_enrolment(user, device.code(), actor="user:u", address=ADDRESS)
    clock.advance(seconds=30)
    services.totp.check(user, recovery_code=codes[0], address=ADDRESS, purpose="login")
    with pytest.raises(InvalidRecoveryCode):
        services.totp.check(user, recovery_code=codes[0], address=ADDRESS, purpose="login")
    services.totp.disable(user, code=device.code(), actor="user:u", address=ADDRESS)
    services.totp.reset(user, actor="user:admin")
    assert actions(db) == [
        "user.create", "totp.enrol", "totp.failed", "totp.confirm", "totp.recovery_code.use", "totp.failed",
        "totp.disable", "totp.reset",
    ]
    failures = db.session.scalars(db.select(AuditEvent).where(AuditEvent.outcome == "failure")).all()
    assert [f.details for f in failures] == [
        {"purpose": "confirm", "reason": "wrong"}, {"purpose": "login", "reason": "recovery_code"},
    ]
    dump = " ".join(str(e.details) for e in db.session.scalars(db.select(AuditEvent)))
    assert device.totp.secret not in dump and codes[0] not in dump
