"""Unpadded Base64, standard and URL-safe, as the Matrix appendices define it."""

from __future__ import annotations

import base64
import binascii
import re

__all__ = [
    "unpadded_b64decode",
    "unpadded_b64encode",
    "urlsafe_b64decode",
    "urlsafe_b64encode",
]

# The decoders check the alphabet themselves: base64.b64decode without
# validate=True silently drops unknown characters, which would let two
# different strings decode to the same bytes.
_STANDARD_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_RE = re.compile(r"[A-Za-z0-9\-_]*={0,2}")


def unpadded_b64encode(b: bytes) -> str:
    """Standard-alphabet Base64 of ``b`` with the ``=`` padding removed."""
    return base64.b64encode(b).decode("ascii").rstrip("=")


def urlsafe_b64encode(b: bytes) -> str:
    """URL-safe Base64 (``-`` and ``_``) of ``b`` with the padding removed."""
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def unpadded_b64decode(s: str) -> bytes:
    """Decode standard Base64, padded or not (the spec asks decoders to accept both).

    Raises ``ValueError`` for characters outside the alphabet or an impossible length.
    """
    return _decode(s, _STANDARD_RE, base64.b64decode)


def urlsafe_b64decode(s: str) -> bytes:
    """Decode URL-safe Base64, padded or not. Raises ``ValueError`` on bad input."""
    return _decode(s, _URLSAFE_RE, base64.urlsafe_b64decode)


def _decode(s: str, alphabet: re.Pattern[str], decoder: object) -> bytes:
    if not isinstance(s, str) or alphabet.fullmatch(s) is None:
        raise ValueError("not valid base64")
    body = s.rstrip("=")
    if len(body) % 4 == 1:
        # No byte string encodes to a length of 4n+1 characters.
        raise ValueError("not valid base64: impossible length")
    if len(s) != len(body) and len(s) % 4 != 0:
        # Padding is optional, but when present it must be correct.
        raise ValueError("not valid base64: wrong padding")
    padded = body + "=" * (-len(body) % 4)
    try:
        return decoder(padded)  # type: ignore[operator, no-any-return]
    except binascii.Error as e:
        raise ValueError(f"not valid base64: {e}") from e
