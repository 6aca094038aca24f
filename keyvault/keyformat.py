"""API-key format: minting, parsing and the secret's checksum. Pure functions: no Flask, no database.

A key is `key_id` = `pkid-<UTC YYYYMMDD>-<21 base62>` and a 43-character base62
`secret` whose last 6 characters are the base62 CRC32 (zlib) of its first 37.
The checksum lets a mistyped or truncated secret be refused before any database
work, and lets secret scanners recognise a leaked key (see docs/keys.md).
"""

from __future__ import annotations

import re
import secrets
import zlib
from datetime import date

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_PREFIX = "pkid-"
KEY_ID_RANDOM_LENGTH = 21
KEY_ID_LENGTH = len(KEY_ID_PREFIX) + 8 + 1 + KEY_ID_RANDOM_LENGTH  # 35
SECRET_LENGTH = 43
CHECKSUM_LENGTH = 6
SECRET_BODY_LENGTH = SECRET_LENGTH - CHECKSUM_LENGTH  # 37

KEY_ID_PATTERN = r"pkid-[0-9]{8}-[0-9A-Za-z]{21}"
SECRET_PATTERN = r"[0-9A-Za-z]{43}"
# What a secret scanner looks for: the pair as clients send it.
TOKEN_PATTERN = KEY_ID_PATTERN + ":" + SECRET_PATTERN

_KEY_ID = re.compile(r"pkid-([0-9]{4})([0-9]{2})([0-9]{2})-[0-9A-Za-z]{21}")
_SECRET = re.compile(SECRET_PATTERN)


class MalformedKey(ValueError):
    """Not a well-formed key id or secret. The message never repeats the input."""


def base62(number: int, width: int) -> str:
    """`number` in base62 (0-9A-Za-z), left-padded with '0' to `width`."""
    if number < 0:
        raise ValueError("base62 encodes non-negative numbers only")
    digits = []
    rest_number = number
    while rest_number:
        rest_number, rest = divmod(rest_number, 62)
        digits.append(ALPHABET[rest])
    encoded = "".join(reversed(digits))
    if len(encoded) > width:
        raise ValueError(f"{number} does not fit in {width} base62 characters")
    return encoded.rjust(width, "0")


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of a secret's first 37 characters (CRC32 < 62**6)."""
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_key_id(today: date) -> str:
    """A fresh key id for a key minted on `today` (a UTC date)."""
    return f"{KEY_ID_PREFIX}{today:%Y%m%d}-{_random_base62(KEY_ID_RANDOM_LENGTH)}"


def new_secret() -> str:
    """37 base62 characters from the OS CSPRNG (about 220 bits) and their checksum."""
    body = _random_base62(SECRET_BODY_LENGTH)
    return body + checksum(body)


def is_key_id(text: str) -> bool:
    """Exactly `pkid-YYYYMMDD-<21 base62>` with a real calendar date."""
    match = _KEY_ID.fullmatch(text) if isinstance(text, str) and len(text) == KEY_ID_LENGTH else None
    if match is None:
        return False
    year, month, day = (int(part) for part in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def looks_like_key_id(text: str) -> bool:
    """Does this username claim to be a key id (well-formed or not)?"""
    return isinstance(text, str) and text[:len(KEY_ID_PREFIX)].lower() == KEY_ID_PREFIX


def is_secret(text: str) -> bool:
    """43 base62 characters whose last 6 are the checksum of the first 37.

    The checksum is public (anyone can compute it), so comparing it in
    variable time leaks nothing; it only spares the database typos and junk.
    """
    if not isinstance(text, str) or len(text) != SECRET_LENGTH or not _SECRET.fullmatch(text):
        return False
    return checksum(text[:SECRET_BODY_LENGTH]) == text[SECRET_BODY_LENGTH:]


def check_pair(key_id: str, secret: str) -> None:
    """Raise MalformedKey unless both halves are well-formed; never touches storage."""
    if not is_key_id(key_id):
        raise MalformedKey("not a well-formed key id")
    if not is_secret(secret):
        raise MalformedKey("the secret is malformed or its checksum does not match")
