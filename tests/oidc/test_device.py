"""The device authorization grant (RFC 8628): the device's endpoints, the /device pages, and the
attacks on them (guessing the short code, polling too fast, redeeming twice, another client's
code, an approval by a session that may not give one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import segno
from sqlalchemy import func, select

from authserver.audit.models import AuditEvent
from authserver.extensions import db as _db
from authserver.oidc.devices import USER_CODE_ALPHABET, normalise_user_code
from authserver.oidc.models import DeviceAuthorization, OAuthToken
from tests.helpers.csrf import csrf_token
from tests.helpers.factories import DEFAULT_PASSWORD, enrol_totp, login, make_client, make_key, make_user
from tests.helpers.oidc import decode_id_token, live_browser, logged_in

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def alice(services):
    return make_user(services, "alice")


@pytest.fixture
def frame(services):
    """A photo frame: a public client registered for the device grant and refresh tokens."""
    client, _ = make_client(services, "Living-room Frame", redirect_uris=(), public=True,
                            scope="openid profile offline_access", grants=("device_code", "refresh_token"))
    return client


def start(http, client, secret=None, **form):
    data = {"scope": "openid profile", **form}
    if secret is None:
        data["client_id"] = client.client_id
        return http.post("/oauth/device_authorization", data=data)
    return http.post("/oauth/device_authorization", data=data, auth=(client.client_id, secret))


def poll(http, client, device_code, secret=None):
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code}
    if secret is None:
        data["client_id"] = client.client_id
        return http.post("/oauth/token", data=data)
    return http.post("/oauth/token", data=data, auth=(client.client_id, secret))


def enter_code(http, user_code: str):
    """The /device form as a browser sends it: the code entered, the consent page answered."""
    page = http.get("/device")
    assert page.status_code == 200, page.text
    return http.post("/device", data={"csrf_token": csrf_token(page.text), "user_code": user_code})


def decide(http, consent_page, choice: str = "allow"):
    hidden = re.search(r'name="user_code" type="hidden" value="([^"]*)"', consent_page.text)
    assert hidden, consent_page.text
    return http.post("/device/decision", data={"csrf_token": csrf_token(consent_page.text),
                                               "user_code": hidden.group(1), choice: choice})


def approve(http, user_code: str, choice: str = "allow"):
    consent = enter_code(http, user_code)
    assert consent.status_code == 200, consent.text
    return decide(http, consent, choice)


# -- discovery and the device's first request ---------------------------------------


def test_discovery_lists_the_device_endpoint_and_grant(client, services):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["device_authorization_endpoint"] == services.settings.issuer.rstrip("/") + "/oauth/device_authorization"
    assert DEVICE_GRANT in meta["grant_types_supported"]


def test_a_device_gets_a_readable_user_code_and_a_high_entropy_device_code(client, services, frame, db):
    response = start(client, frame)
    assert response.status_code == 200, response.json
    body = response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(f"[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}", body["user_code"])
    assert len(body["device_code"]) >= 43
    base = services.settings.issuer.rstrip("/")
    assert body["verification_uri"] == base + "/device"
    assert body["verification_uri_complete"] == base + "/device?user_code=" + body["user_code"]
    assert body["expires_in"] == 600 and body["interval"] == 5
    row = db.session.scalar(select(DeviceAuthorization))
    # Neither code is stored as it was handed out.
    assert body["device_code"] not in (row.device_code_hash, row.user_code_hmac)
    assert normalise_user_code(body["user_code"]) not in (row.device_code_hash, row.user_code_hmac)
    assert row.scope == "openid profile" and row.status == "pending"


def test_user_codes_are_typed_in_any_case_with_or_without_the_dash():
    assert normalise_user_code("bcdf-ghjk") == "BCDFGHJK"
    assert normalise_user_code(" BCDF GHJK ") == "BCDFGHJK"
    assert normalise_user_code("bcdfghjk") == "BCDFGHJK"
    for wrong in ("BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1", "", None, "B" * 40, "ＢＣＤＦ-ＧＨＪＫ"):
        assert normalise_user_code(wrong) is None


def test_a_client_not_registered_for_the_device_grant_is_refused(client, services):
    gallery, secret = make_client(services)
    response = start(client, gallery, secret)
    assert response.status_code == 400 and response.json["error"] == "unauthorized_client"
    assert "--grant device_code" in response.json["error_description"]


def test_a_confidential_device_client_must_authenticate(client, services):
    tv, secret = make_client(services, "TV app", redirect_uris=(), grants=("device_code",), scope="openid")
    assert start(client, tv, secret, scope="openid").status_code == 200
    wrong = start(client, tv, "not-the-secret", scope="openid")
    assert wrong.status_code == 401 and wrong.json["error"] == "invalid_client"
    bare = start(client, tv, None, scope="openid")  # client_id alone: not a public client
    assert bare.status_code == 401 and bare.json["error"] == "invalid_client"


def test_a_scope_beyond_the_registration_is_refused(client, frame):
    response = start(client, frame, scope="openid groups")
    assert response.status_code == 400 and response.json["error"] == "invalid_scope"


def test_starting_device_requests_is_throttled_per_address(client, services, frame):
    services.throttle.rules["device-start:address"] = (3, 60)
    assert all(start(client, frame).status_code == 200 for _ in range(3))
    refused = start(client, frame)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


# -- the whole flow ------------------------------------------------------------------


def test_device_flow_pending_then_approved_then_tokens_once(client, services, alice, frame, clock, db):
    device = client.application.test_client()
    started = start(device, frame, scope="openid profile offline_access").json
    pending = poll(device, frame, started["device_code"])
    assert pending.status_code == 400 and pending.json["error"] == "authorization_pending"

    logged_in(client, "alice")
    # Typed in lower case without the dash, as a person might.
    consent = enter_code(client, started["user_code"].lower().replace("-", ""))
    assert consent.status_code == 200
    assert "A device is asking" in consent.text and "Living-room Frame" in consent.text
    assert started["user_code"] in consent.text  # the user checks it against the device
    done = decide(client, consent)
    assert done.status_code == 200 and "Device connected" in done.text

    clock.advance(seconds=5)
    tokens = poll(device, frame, started["device_code"])
    assert tokens.status_code == 200, tokens.json
    body = tokens.json
    assert body["token_type"] == "Bearer" and body["refresh_token"] and body["scope"] == "openid profile offline_access"
    claims = decode_id_token(services, body["id_token"])
    assert claims["sub"] == alice.sub and claims["aud"] == frame.client_id and "nonce" not in claims
    assert claims["amr"] == ["pwd"] and claims["acr"] == "1"
    assert client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).json[
        "preferred_username"] == "alice"

    clock.advance(seconds=5)
    again = poll(device, frame, started["device_code"])
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"
    # The refresh token works as any other.
    refreshed = device.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": frame.client_id,
                                                  "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.json
    actions = [a for (a,) in db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id))]
    assert "oauth.device_approved" in actions and "oauth.token_issued" in actions
    # The frame is listed among the user's connected apps, where it can be revoked.
    assert [c["client_id"] for c in client.get("/api/me/consents").json["consents"]] == [frame.client_id]


def test_the_second_factor_of_the_approving_session_is_carried_into_the_tokens(client, services, frame, clock):
    authenticator, _ = enrol_totp(services, make_user(services, "bo"))
    response = client.post("/api/session/login", json={"username": "bo", "password": DEFAULT_PASSWORD,
                                                        "totp_code": authenticator.code()})
    assert response.status_code == 200
    started = start(client, frame).json
    assert approve(client, started["user_code"]).status_code == 200
    tokens = poll(client, frame, started["device_code"])
    claims = decode_id_token(services, tokens.json["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "2" and claims["auth_time"]


def test_a_denied_device_gets_access_denied_and_no_tokens(client, services, alice, frame, db):
    started = start(client, frame).json
    logged_in(client, "alice")
    done = approve(client, started["user_code"], "deny")
    assert done.status_code == 200 and "Device refused" in done.text
    denied = poll(client, frame, started["device_code"])
    assert denied.status_code == 400 and denied.json["error"] == "access_denied"
    assert client.get("/api/me/consents").json["consents"] == []


def test_an_expired_device_code_is_expired_token_and_its_user_code_no_longer_works(client, services, alice, frame,
                                                                                    clock):
    started = start(client, frame).json
    clock.advance(seconds=601)
    expired = poll(client, frame, started["device_code"])
    assert expired.status_code == 400 and expired.json["error"] == "expired_token"
    logged_in(client, "alice")
    page = enter_code(client, started["user_code"])
    assert page.status_code == 400 and "expired" in page.text


def test_polling_faster_than_the_interval_slows_the_device_down_by_five_seconds(client, frame, clock, db):
    started = start(client, frame).json
    code = started["device_code"]
    assert poll(client, frame, code).json["error"] == "authorization_pending"
    clock.advance(seconds=2)
    slow = poll(client, frame, code)
    assert slow.status_code == 400 and slow.json["error"] == "slow_down"
    assert db.session.scalar(select(DeviceAuthorization.poll_interval)) == 10
    clock.advance(seconds=6)  # the old interval is not enough any more
    assert poll(client, frame, code).json["error"] == "slow_down"
    assert db.session.scalar(select(DeviceAuthorization.poll_interval)) == 15
    clock.advance(seconds=15)
    assert poll(client, frame, code).json["error"] == "authorization_pending"
    # Another device's pace is its own.
    other = start(client, frame).json
    assert poll(client, frame, other["device_code"]).json["error"] == "authorization_pending"


def test_a_device_code_is_bound_to_its_client(client, services, alice, frame):
    started = start(client, frame).json
    logged_in(client, "alice")
    approve(client, started["user_code"])
    thief, _ = make_client(services, "Other Frame", redirect_uris=(), public=True, grants=("device_code",))
    stolen = poll(client, thief, started["device_code"])
    assert stolen.status_code == 400 and stolen.json["error"] == "invalid_grant"
    assert poll(client, frame, started["device_code"]).status_code == 200  # still the frame's


def test_unknown_missing_and_oversized_device_codes_are_clear_400s(client, frame):
    assert poll(client, frame, "x" * 43).json["error"] == "invalid_grant"
    assert poll(client, frame, "x" * 5000).json["error"] == "invalid_grant"
    missing = client.post("/oauth/token", data={"grant_type": DEVICE_GRANT, "client_id": frame.client_id})
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"


def test_the_same_user_code_is_approved_once(client, services, alice, frame):
    make_user(services, "mallory")
    started = start(client, frame).json
    logged_in(client, "alice")
    first_consent = enter_code(client, started["user_code"])
    other = client.application.test_client()
    logged_in(other, "mallory")
    second_consent = enter_code(other, started["user_code"])  # both saw the consent page
    assert decide(client, first_consent).status_code == 200
    late = decide(other, second_consent)
    assert late.status_code == 400 and "not valid, was used already or has expired" in late.text
    tokens = poll(client, frame, started["device_code"])
    assert decode_id_token(services, tokens.json["id_token"])["sub"] == alice.sub


# -- the /device pages -----------------------------------------------------------------


def test_device_page_sends_a_signed_out_user_to_log_in_and_back_with_the_code(client, alice, frame):
    started = start(client, frame).json
    link = urlsplit(started["verification_uri_complete"])
    response = client.get(f"{link.path}?{link.query}")
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == "/login" and parse_qs(target.query)["next"] == [f"/device?user_code={started['user_code']}"]
    logged_in(client, "alice")
    page = client.get(f"{link.path}?{link.query}")
    # The code is filled in but not approved: the user still confirms it (RFC 8628 §5.4).
    assert page.status_code == 200 and f'value="{started["user_code"]}"' in page.text
    assert "Continue" in page.text


def test_a_session_opened_with_an_api_key_may_not_approve_a_device(client, services, alice, frame):
    key_id, secret = make_key(services, alice)
    assert login(client, key_id, secret).status_code == 200
    assert client.get("/device").status_code == 403
    assert "needs a password login" in client.get("/device").text


def test_device_forms_need_their_csrf_token(client, alice, frame, db):
    started = start(client, frame).json
    logged_in(client, "alice")
    assert client.post("/device", data={"user_code": started["user_code"]}).status_code == 400
    consent = enter_code(client, started["user_code"])
    forged = client.post("/device/decision", data={"user_code": started["user_code"], "allow": "allow"})
    assert forged.status_code == 400
    assert db.session.scalar(select(DeviceAuthorization.status)) == "pending"
    assert decide(client, consent).status_code == 200


def test_guessing_user_codes_is_throttled_per_session_and_per_address(client, services, alice, frame, db):
    services.throttle.rules["device:address"] = (12, 300)  # the default is 30; 10 per session
    started = start(client, frame).json
    logged_in(client, "alice")
    wrong = ["BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM", "BCDF-GHJN", "BCDF-GHJP"]
    for guess in wrong * 2:
        if normalise_user_code(guess) != normalise_user_code(started["user_code"]):
            assert enter_code(client, guess).status_code == 400
    refused = enter_code(client, started["user_code"])  # even the right code: the session's tries are used up
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many codes tried" in refused.text
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "oauth.device_code_unknown")) >= 9
    # A fresh session from the same address has its own tries, until the address's run out (12).
    fresh = client.application.test_client()
    logged_in(fresh, "alice")
    assert enter_code(fresh, started["user_code"]).status_code == 200  # the address's 12th
    assert enter_code(fresh, started["user_code"]).status_code == 429  # its 13th


# -- a live server, a device program polling it, a person approving ---------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "device_login.py"


def live_approve(http, live, user_code: str, choice: str = "allow"):
    """The /device pages over real HTTP, as a signed-in browser answers them."""
    page = http.get(live.url + "/device", params={"user_code": user_code})
    assert page.status_code == 200, page.text
    consent = http.post(live.url + "/device", data={"csrf_token": csrf_token(page.text), "user_code": user_code})
    assert consent.status_code == 200 and "A device is asking" in consent.text, consent.text
    hidden = re.search(r'name="user_code" type="hidden" value="([^"]*)"', consent.text).group(1)
    return http.post(live.url + "/device/decision",
                     data={"csrf_token": csrf_token(consent.text), "user_code": hidden, choice: choice})


def run_device_program(live, client_id: str, tmp_path, *extra: str) -> tuple[subprocess.Popen, dict]:
    """examples/device_login.py in its own process; (the process, the codes it shows the user)."""
    program = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--issuer", live.url, f"--client-id={client_id}",
         "--tokens", str(tmp_path / "tokens.json"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = program.stdout.readline()
    assert first, f"the device program showed no code: {program.stderr.read()}"
    shown_codes = json.loads(first)
    return program, shown_codes


def test_a_device_program_signs_in_while_a_person_approves_on_a_live_server(live, tmp_path):
    services = live.services
    make_user(services, "alice")
    client, _ = make_client(services, "Kitchen Frame", redirect_uris=(), public=True,
                            scope="openid profile offline_access", grants=("device_code", "refresh_token"))
    program, shown_codes = run_device_program(live, client.client_id, tmp_path)
    try:
        assert shown_codes["verification_uri_complete"] == f"{live.url}/device?user_code={shown_codes['user_code']}"
        http = live_browser(live, "alice")
        done = live_approve(http, live, shown_codes["user_code"])
        assert done.status_code == 200 and "Device connected" in done.text
        assert program.wait(timeout=30) == 0, program.stderr.read()
    finally:
        program.kill()
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    assert tokens["access_token"] not in program.stderr.read()  # never printed
    me = requests.get(live.url + "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                      timeout=10)
    assert me.status_code == 200 and me.json()["preferred_username"] == "alice"


def test_a_device_program_hears_a_denial(live, tmp_path):
    services = live.services
    make_user(services, "alice")
    client, _ = make_client(services, "Hall Frame", redirect_uris=(), public=True, scope="openid profile",
                            grants=("device_code",))
    program, shown_codes = run_device_program(live, client.client_id, tmp_path, "--scope", "openid profile")
    try:
        live_approve(live_browser(live, "alice"), live, shown_codes["user_code"], "deny")
        assert program.wait(timeout=30) == 2
        assert "access_denied" in program.stderr.read()
    finally:
        program.kill()
    assert not (tmp_path / "tokens.json").exists()


def test_parallel_polls_at_the_moment_of_approval_have_one_winner(live):
    services = live.services
    make_user(services, "alice")
    client, _ = make_client(services, "Den Frame", redirect_uris=(), public=True, scope="openid profile",
                            grants=("device_code",))
    started = requests.post(live.url + "/oauth/device_authorization", timeout=10,
                            data={"client_id": client.client_id, "scope": "openid profile"}).json()
    live_approve(live_browser(live, "alice"), live, started["user_code"])
    barrier = threading.Barrier(8)
    answers: list[requests.Response] = []

    def one_poll():
        barrier.wait()
        answers.append(requests.post(live.url + "/oauth/token", timeout=30, data={
            "grant_type": DEVICE_GRANT, "device_code": started["device_code"], "client_id": client.client_id}))

    threads = [threading.Thread(target=one_poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [400] * 7, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}
    issued = _db.session.scalar(select(func.count()).select_from(OAuthToken).where(
        OAuthToken.client_id == client.client_id))
    assert issued == 1


def test_the_qr_code_links_to_this_servers_device_page_and_nothing_else(client, services):
    svg = client.get("/device/qr", query_string={"user_code": "wjff lxwb"})
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and svg.text.lstrip().startswith("<svg")
    assert svg.headers["Cache-Control"] == "no-store"
    expected = segno.make(services.oidc.base + "/device?user_code=WJFF-LXWB", error="m")
    assert svg.text == expected.svg_inline(scale=6, dark="#000", light="#fff", title="Sign-in link")
    # What it encodes is built from the issuer and a normalised code; anything else is refused.
    for bad in ("", "WJFF-LXW", "https://evil.example/", "WJFF-LXWB<script>", "A" * 5000):
        refused = client.get("/device/qr", query_string={"user_code": bad})
        assert refused.status_code == 400 and "<" not in refused.text


def test_client_ids_never_start_with_a_dash(services, monkeypatch):
    """A client_id is pasted into command lines (`--client-id -abc…` reads as an option)."""
    import secrets as secrets_module

    from authserver.oidc import clients

    drawn = iter(["-startsWithADashxxxxxxxx", "fineClientIdxxxxxxxxxxxx"])
    monkeypatch.setattr(secrets_module, "token_urlsafe", lambda n: next(drawn))
    assert clients.new_client_id() == "fineClientIdxxxxxxxxxxxx"


# -- what ends an approval before the device comes for its tokens (black-box review) ----------


def approved(client, services, frame, username="alice", scope="openid profile offline_access"):
    started = start(client, frame, scope=scope).json
    logged_in(client, username)
    assert approve(client, started["user_code"]).status_code == 200
    return started


def test_a_password_change_withdraws_an_approval_not_yet_redeemed(client, services, alice, frame):
    started = approved(client, services, frame)
    services.accounts.set_password(alice, "a brand new long password", actor="test")
    refused = poll(client, frame, started["device_code"])
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    assert "withdrawn" in refused.json["error_description"]


def test_removing_the_apps_access_withdraws_an_approval_not_yet_redeemed(client, services, alice, frame):
    started = approved(client, services, frame)
    assert client.delete(f"/api/me/consents/{frame.client_id}").status_code == 200
    refused = poll(client, frame, started["device_code"])
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"


def test_without_offline_access_an_approval_ends_with_the_session_that_gave_it(client, services, alice, frame):
    started = approved(client, services, frame, scope="openid profile")
    assert client.post("/api/session/logout", json={}).status_code == 200
    refused = poll(client, frame, started["device_code"])
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    assert "session that approved" in refused.json["error_description"]


def test_device_pages_are_never_cached_and_an_answer_with_both_buttons_is_a_no(client, services, alice, frame):
    started = start(client, frame).json
    logged_in(client, "alice")
    assert client.get("/device").headers["Cache-Control"] == "no-store"
    consent = enter_code(client, started["user_code"])
    assert consent.headers["Cache-Control"] == "no-store"
    hidden = re.search(r'name="user_code" type="hidden" value="([^"]*)"', consent.text).group(1)
    both = client.post("/device/decision", data={"csrf_token": csrf_token(consent.text), "user_code": hidden,
                                                 "allow": "allow", "deny": "deny"})
    assert both.status_code == 200 and "Device refused" in both.text
    assert both.headers["Cache-Control"] == "no-store"
    assert poll(client, frame, started["device_code"]).json["error"] == "access_denied"
