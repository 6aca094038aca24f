"""TOTP and recovery codes as pure functions (no database)."""

import base64
import re
from datetime import UTC, datetime

import pytest

from authserver.totp import otp

RFC6238_KEY = b"12345678901234567890"


# RFC 6238 Appendix B, the SHA-1 rows: (Unix time, 8-digit TOTP).
@pytest.mark.parametrize("unix_time,expected", [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
])
def test_rfc6238_appendix_b_sha1_vectors(unix_time, expected):
    step = otp.time_step(datetime.fromtimestamp(unix_time, UTC))
    assert otp.totp_code(RFC6238_KEY, step, digits=8) == expected
    # The 6-digit code apps show is the same truncation modulo 10^6.
    assert otp.totp_code(RFC6238_KEY, step) == expected[-6:]


def test_rfc6238_vector_matches_within_its_step():
    step = otp.time_step(datetime.fromtimestamp(59, UTC))
    assert otp.matching_step(RFC6238_KEY, "287082", step) == step


@pytest.mark.parametrize("offset,accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_one_step_of_skew_is_accepted_two_are_not(offset, accepted):
    now_step = 1111111109 // 30  # the fixed key's codes at steps -2..+2 around it are all different
    code = otp.totp_code(RFC6238_KEY, now_step + offset)
    expected = now_step + offset if accepted else None
    assert otp.matching_step(RFC6238_KEY, code, now_step) == expected


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x", "１２３４５６", "123456\n7"])
def test_malformed_codes_match_nothing(code):
    assert otp.matching_step(RFC6238_KEY, code, 1) is None


def test_spaces_inside_a_code_are_ignored():
    code = otp.totp_code(RFC6238_KEY, 7)
    assert otp.matching_step(RFC6238_KEY, f" {code[:3]} {code[3:]} ", 7) == 7


def test_secrets_are_160_random_bits():
    secrets = {otp.new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 20 for s in secrets)
    text = otp.secret_text(next(iter(secrets)))
    assert re.fullmatch(r"[A-Z2-7]{32}", text)
    assert base64.b32decode(text) in secrets


def test_otpauth_uri_has_issuer_account_and_secret():
    uri = otp.otpauth_uri(RFC6238_KEY, issuer="photos.example", account="alice")
    assert uri == "otpauth://totp/photos.example:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=photos.example"


def test_qr_code_is_inline_svg_without_script_or_style():
    svg = otp.qr_svg("otpauth://totp/x:y?secret=ABC&issuer=x")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg and "style=" not in svg


def test_ten_recovery_codes_of_80_bits():
    codes = otp.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4}", code)
    assert len(otp.RECOVERY_ALPHABET) ** otp.RECOVERY_CODE_LENGTH == 2**80


def test_recovery_codes_survive_retyping():
    code = "ABCD-EFGH-JKMN-P012"
    canonical = "ABCDEFGHJKMNP012"
    for typed in (code, "abcd efgh jkmn p012", "abcdefghjkmnpo12".replace("o", "0"),
                  " ABCDEFGHJKMNPOI2 ".replace("I", "1")):
        assert otp.normalise_recovery_code(typed) == canonical
    assert otp.normalise_recovery_code("abcdefghjkmnpOl2") == "ABCDEFGHJKMNP012"


@pytest.mark.parametrize(
    "typed", ["", "ABCD-EFGH-JKMN", "ABCD-EFGH-JKMN-P012-3", "ABCD-EFGH-JKMN-P01U", "!!!!-EFGH-JKMN-P012"])
def test_malformed_recovery_codes_are_refused_before_any_lookup(typed):
    assert otp.normalise_recovery_code(typed) is None
