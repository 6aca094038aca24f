import re
import zlib
from datetime import date

import pytest

from keyvault import keyformat
from keyvault.keyformat import ALPHABET, MalformedKey


def test_alphabet_is_digits_upper_lower_in_that_order():
    assert ALPHABET == "0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("number,width,expected", [(0, 6, "000000"), (61, 2, "0z"), (62, 3, "010"),
                                                   (2**32 - 1, 6, "4gfFC3")])
def test_base62_left_pads_with_zero(number, width, expected):
    assert keyformat.base62(number, width) == expected


def test_checksum_is_base62_crc32_of_the_first_37_characters():
    body = "A" * 37
    crc = zlib.crc32(body.encode())
    digits = ""
    while crc:
        crc, rest = divmod(crc, 62)
        digits = ALPHABET[rest] + digits
    assert keyformat.checksum(body) == digits.rjust(6, "0")


def test_minted_key_id_and_secret_have_the_documented_shape():
    key_id = keyformat.new_key_id(date(2026, 3, 9))
    secret = keyformat.new_secret()
    assert re.fullmatch(r"pkid-20260309-[0-9A-Za-z]{21}", key_id)
    assert re.fullmatch(r"[0-9A-Za-z]{43}", secret)
    assert secret[37:] == keyformat.checksum(secret[:37])
    assert re.fullmatch(keyformat.TOKEN_PATTERN, f"{key_id}:{secret}")
    keyformat.check_pair(key_id, secret)


def test_secrets_and_ids_are_random():
    assert len({keyformat.new_secret() for _ in range(200)}) == 200
    assert len({keyformat.new_key_id(date(2026, 1, 1)) for _ in range(200)}) == 200


def test_every_single_character_change_of_a_secret_fails_the_checksum():
    secret = keyformat.new_secret()
    for position in range(len(secret)):
        for replacement in "0aZ":
            if secret[position] == replacement:
                continue
            changed = secret[:position] + replacement + secret[position + 1:]
            assert not keyformat.is_secret(changed), (position, replacement)


@pytest.mark.parametrize("key_id", [
    "pkid-20260230-ABCDEFGHIJKLMNOPQRSTU",  # no 30 February
    "pkid-2026011-ABCDEFGHIJKLMNOPQRSTUV",
    "pkid-20260101-ABCDEFGHIJKLMNOPQRST",  # 20 random characters
    "pkid-20260101-ABCDEFGHIJKLMNOPQRSTU_",
    "pkid-20260101-ABCDEFGHIJKLMNOPQRST!",
    "PKID-20260101-ABCDEFGHIJKLMNOPQRSTU",
    "pkid_20260101-ABCDEFGHIJKLMNOPQRSTU",
    "pkid-20260101-ABCDEFGHIJKLMNOPQRSTU\n",
    "",
])
def test_malformed_key_ids_are_refused(key_id):
    assert not keyformat.is_key_id(key_id)
    with pytest.raises(MalformedKey):
        keyformat.check_pair(key_id, keyformat.new_secret())


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-1],  # truncated
    lambda s: s + "0",
    lambda s: s[:10] + "-" + s[11:],  # outside the alphabet
    lambda s: s[1:] + s[0],  # shifted
    lambda s: "",
])
def test_malformed_secrets_are_refused(mangle):
    with pytest.raises(MalformedKey):
        keyformat.check_pair(keyformat.new_key_id(date(2026, 1, 1)), mangle(keyformat.new_secret()))


def test_malformed_key_message_never_echoes_the_input():
    secret = keyformat.new_secret()
    with pytest.raises(MalformedKey) as caught:
        keyformat.check_pair("pkid-20260101-ABCDEFGHIJKLMNOPQRSTU", secret[:-1] + ("1" if secret[-1] != "1" else "2"))
    assert secret[:20] not in str(caught.value)
