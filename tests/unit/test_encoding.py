"""Unpadded base64, standard and URL-safe."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.core.encoding import (
    unpadded_b64decode,
    unpadded_b64encode,
    urlsafe_b64decode,
    urlsafe_b64encode,
)
from tests.unit.conftest import VECTORS


@pytest.mark.parametrize(("plain", "encoded"), VECTORS["unpadded_base64"])
def test_spec_examples(plain: str, encoded: str) -> None:
    assert unpadded_b64encode(plain.encode()) == encoded
    assert unpadded_b64decode(encoded) == plain.encode()


@pytest.mark.parametrize(("plain", "encoded"), VECTORS["unpadded_base64"])
def test_decode_accepts_padding(plain: str, encoded: str) -> None:
    padded = encoded + "=" * (-len(encoded) % 4)
    assert unpadded_b64decode(padded) == plain.encode()
    assert urlsafe_b64decode(padded) == plain.encode()


def test_alphabets_differ_in_two_characters() -> None:
    data = bytes([0xFB, 0xFF, 0xBF])
    assert unpadded_b64encode(data) == "+/+/"
    assert urlsafe_b64encode(data) == "-_-_"
    assert urlsafe_b64decode("-_-_") == data
    with pytest.raises(ValueError):
        unpadded_b64decode("-_-_")
    with pytest.raises(ValueError):
        urlsafe_b64decode("+/+/")


@pytest.mark.parametrize(
    "bad",
    [
        "A",  # 4n+1 characters encode nothing
        "Zm9vY",
        "Zm9v!",
        "Zm 9v",
        "Zm9v\n",
        "Zg=",  # padding present but incomplete
        "Zg===",
        "=Zg=",
        "Zm=9v",
    ],
)
def test_decode_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        unpadded_b64decode(bad)
    with pytest.raises(ValueError):
        urlsafe_b64decode(bad)


def test_decode_rejects_non_str() -> None:
    with pytest.raises(ValueError):
        unpadded_b64decode(b"Zm9v")  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    enc = unpadded_b64encode(data)
    assert "=" not in enc
    assert enc == base64.b64encode(data).decode().rstrip("=")
    assert unpadded_b64decode(enc) == data
    uenc = urlsafe_b64encode(data)
    assert "+" not in uenc and "/" not in uenc and "=" not in uenc
    assert urlsafe_b64decode(uenc) == data
