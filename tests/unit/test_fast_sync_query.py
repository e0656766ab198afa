"""The fast /sync lane reads its query string exactly as parse_qsl(keep_blank_values=True) does."""

from urllib.parse import parse_qsl

import pytest

from homeserver.api.fast_sync import parse_query

CASES = [b"", b"a=1", b"a=1&a=2", b"a", b"a=&b", b"&&a=1&", b"filter=%7B%22room%22%3A1%7D&since=s1_2",
         b"x=a+b%2Bc", b"%61=1", b"k=%E9", b"k=%C3%A9", "k=\u00e9".encode(), b"k=a=b", b"=v", b"a;b=1",
         b"k=%zz", b"k=%"]


@pytest.mark.parametrize("query", CASES)
def test_same_as_parse_qsl(query: bytes) -> None:
    expected: dict[str, str] = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        expected.setdefault(k, v)
    assert parse_query(query) == expected
    assert parse_query(query) == expected  # and again, from the remembered decodings
