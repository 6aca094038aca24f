"""TOTP (RFC 6238) and recovery codes as pure functions: no Flask, no database.

SHA-1, 6 digits, 30-second steps: what Google Authenticator and every other
authenticator app implement. pyotp computes the codes; this module decides
which time steps a code may match and how secrets and recovery codes look.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import datetime

import pyotp
import segno

from ..crypto import same

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, the HMAC-SHA-1 block-friendly size RFC 4226 recommends
SKEW_STEPS = 1  # accept the previous and the next step for clocks that drift

RECOVERY_CODE_COUNT = 10
# Crockford's base32: no I, L, O or U, so a code read aloud or copied by hand survives.
RECOVERY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RECOVERY_CODE_LENGTH = 16  # 16 symbols of 5 bits: 80 bits each
_RECOVERY_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_CODE = re.compile(rf"^[0-9]{{{DIGITS}}}$")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def secret_text(secret: bytes) -> str:
    """The base32 form authenticator apps take (no padding)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def time_step(when: datetime) -> int:
    return int(when.timestamp()) // STEP_SECONDS


def totp_code(secret: bytes, step: int, digits: int = DIGITS) -> str:
    otp = pyotp.TOTP(secret_text(secret), digits=digits, digest=hashlib.sha1, interval=STEP_SECONDS)
    return otp.generate_otp(step)


def normalise_code(code: str) -> str:
    return "".join(code.split())


def matching_step(secret: bytes, code: str, now_step: int) -> int | None:
    """The latest step within ±SKEW_STEPS whose code this is, or None.

    Every candidate is computed and compared in constant time, with no early
    exit, so the answer takes the same time whichever step (if any) matches.
    """
    code = normalise_code(code)
    if not _CODE.fullmatch(code):
        return None
    found = None
    for step in range(now_step - SKEW_STEPS, now_step + SKEW_STEPS + 1):
        if same(totp_code(secret, step), code):
            found = step
    return found


def otpauth_uri(secret: bytes, *, issuer: str, account: str) -> str:
    """`otpauth://totp/<issuer>:<account>?secret=…&issuer=…` (the Key Uri Format)."""
    return pyotp.TOTP(secret_text(secret)).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code; no scripts, no styles, so it passes the page's CSP."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", title="TOTP QR code")


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append("-".join(raw[i:i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4)))
    return codes


def normalise_recovery_code(code: str) -> str | None:
    """The canonical form (upper case, no separators), or None when it cannot be a recovery code."""
    cleaned = "".join(code.split()).replace("-", "").upper().translate(_RECOVERY_LOOKALIKES)
    if len(cleaned) != RECOVERY_CODE_LENGTH or any(c not in RECOVERY_ALPHABET for c in cleaned):
        return None
    return cleaned
