"""Identifier grammar: server names, user IDs, room IDs, aliases, event IDs, mxc URIs."""

from __future__ import annotations

import pytest

from homeserver.core.identifiers import (
    get_domain,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_mxc_uri,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_mxc_uri,
    parse_server_name,
    parse_user_id,
)
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS

V1, V3, V4, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("1", "3", "4", "12"))
HASH_STD = "$Rqnc+F/dvnEYJTyHq/iKxU2bZ1CI92+kuZq3a5lr5Zg"
HASH_URL = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"

# -- server names ---------------------------------------------------------

VALID_SERVER_NAMES = [
    # the spec's examples
    "matrix.org",
    "matrix.org:8888",
    "1.2.3.4",
    "1.2.3.4:1234",
    "[1234:5678::abcd]",
    "[1234:5678::abcd]:5678",
    # more
    "localhost",
    "MATRIX.ORG",  # case-sensitive, but allowed
    "my-server.example.com:1",
    "a",
    "[::1]",
    "[::ffff:1.2.3.4]:8448",
    "255.255.255.255",
    "x" * 255,
]
INVALID_SERVER_NAMES = [
    "",
    ":8448",
    "matrix.org:",
    "matrix.org:123456",
    "matrix.org:80a",
    "matrix.org:-1",
    "matrix.org:80:80",
    "under_score.org",
    "spa ce.org",
    "ünicode.org",
    "1.2.3.256",
    "1.2.3.4:",
    "[1234:5678::abcd",
    "1234:5678::abcd",
    "[1234:5678::abcd]x",
    "[1234:5678::abcd]:",
    "[fe80::1%eth0]",
    "[not:an:ip]",
    "[1:2:3:4:5:6:7:8:9]",
    "[]",
    "x" * 256,
]


@pytest.mark.parametrize("name", VALID_SERVER_NAMES)
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name)


@pytest.mark.parametrize("name", INVALID_SERVER_NAMES)
def test_invalid_server_names(name: str) -> None:
    assert not is_valid_server_name(name)


def test_parse_server_name() -> None:
    assert parse_server_name("matrix.org") == ("matrix.org", None)
    assert parse_server_name("matrix.org:8448") == ("matrix.org", 8448)
    assert parse_server_name("[::1]:8008") == ("[::1]", 8008)
    assert parse_server_name("1.2.3.4") == ("1.2.3.4", None)
    with pytest.raises(ValueError):
        parse_server_name("bad_name")


# -- user IDs --------------------------------------------------------------


@pytest.mark.parametrize("lp", ["alice", "a", "0", "a.b_c=d-e/f+g", "x" * 200])
def test_valid_strict_localparts(lp: str) -> None:
    assert is_valid_localpart(lp)
    assert is_valid_user_id(f"@{lp}:example.org", historical=False)


@pytest.mark.parametrize("lp", ["", "Alice", "a b", "a:b", "a#b", "é", "a*", "a\x00", "a\n", "@a"])
def test_invalid_strict_localparts(lp: str) -> None:
    assert not is_valid_localpart(lp)


@pytest.mark.parametrize(
    "user_id",
    [
        "@alice:example.org",
        "@alice:example.org:8448",
        "@alice:[::1]:8448",
        "@Alice:example.org",  # historical: upper case
        "@:example.org",  # historical: empty localpart
        "@ünï cødé!:example.org",
        "@a\x01b:example.org",  # control characters other than NUL are historical-legal
    ],
)
def test_valid_historical_user_ids(user_id: str) -> None:
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        "alice:example.org",
        "@alice",
        "@alice:",
        "#alice:example.org",
        "@a\x00b:example.org",
        "@a\ud800:example.org",  # lone surrogate
        "@alice:bad_server",
        "@alice:example.org:99999999",
    ],
)
def test_invalid_user_ids(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
    assert not is_valid_user_id(user_id, historical=False)
    with pytest.raises(ValueError):
        parse_user_id(user_id)


def test_historical_user_ids_fail_strict() -> None:
    assert not is_valid_user_id("@Alice:example.org", historical=False)
    assert not is_valid_user_id("@:example.org", historical=False)


def test_user_id_length_limit_is_255_bytes() -> None:
    domain = ":example.org"
    fits = "@" + "a" * (255 - 1 - len(domain)) + domain
    assert len(fits.encode()) == 255 and is_valid_user_id(fits, historical=False)
    assert not is_valid_user_id("@a" + fits[1:])
    # Bytes, not characters: 2-byte characters hit the limit sooner.
    wide = "@" + "é" * 122 + domain  # 1 + 244 + 12 = 257 bytes in 135 characters
    assert not is_valid_user_id(wide)


def test_parse_user_id() -> None:
    assert parse_user_id("@alice:example.org") == ("alice", "example.org")
    assert parse_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert parse_user_id("@Alice:example.org") == ("Alice", "example.org")
    with pytest.raises(ValueError):
        parse_user_id("@Alice:example.org", historical=False)


# -- room IDs, aliases, event IDs -------------------------------------------


@pytest.mark.parametrize(
    "room_id",
    [
        "!abc:example.org",
        "!ABCdef123:example.org:8448",
        "!any thing at all!:[::1]",
        "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ",  # v12 room ID from the spec
    ],
)
def test_valid_room_ids(room_id: str) -> None:
    assert is_valid_room_id(room_id)


@pytest.mark.parametrize(
    "room_id",
    [
        "",
        "!",
        "abc:example.org",
        "!:example.org",
        "!abc:",
        "!abc:bad_server",
        "!a\x00b:example.org",
        "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpY",  # 42 characters
        "!Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT/xyIuqDnpYQ",  # standard alphabet
        "!" + "a" * 250 + ":x.org",
    ],
)
def test_invalid_room_ids(room_id: str) -> None:
    assert not is_valid_room_id(room_id)


@pytest.mark.parametrize("alias", ["#room:example.org", "#ünï cødé:example.org:8448", "#a!b$c:[::1]"])
def test_valid_room_aliases(alias: str) -> None:
    assert is_valid_room_alias(alias)


@pytest.mark.parametrize(
    "alias",
    [
        "",
        "room:example.org",
        "#room",
        "#:example.org",
        "#a:b:bad_server",
        "#a\x00:x.org",
        "#" + "a" * 255 + ":x",
    ],
)
def test_invalid_room_aliases(alias: str) -> None:
    assert not is_valid_room_alias(alias)


def test_event_ids_per_format() -> None:
    v1_id = "$a4ecee13e2accdadf56c1025:example.com"
    assert is_valid_event_id(v1_id)
    assert is_valid_event_id(v1_id, V1)
    assert not is_valid_event_id(v1_id, V3)
    assert not is_valid_event_id(v1_id, V4)

    assert is_valid_event_id(HASH_STD) and is_valid_event_id(HASH_URL)
    assert is_valid_event_id(HASH_STD, V3) and not is_valid_event_id(HASH_STD, V4)
    assert is_valid_event_id(HASH_URL, V4) and is_valid_event_id(HASH_URL, V12)
    assert not is_valid_event_id(HASH_URL, V3)
    assert not is_valid_event_id(HASH_URL, V1)


@pytest.mark.parametrize(
    "event_id",
    ["", "$", "abc", "$abc", "$:x.org", "$a:bad_server", HASH_URL[:-1], HASH_URL + "A", "!abc:x.org"],
)
def test_invalid_event_ids(event_id: str) -> None:
    assert not is_valid_event_id(event_id)


# -- mxc URIs and domains ------------------------------------------------------


def test_mxc_uris() -> None:
    assert parse_mxc_uri("mxc://example.org/AbC_12-3") == ("example.org", "AbC_12-3")
    assert is_valid_mxc_uri("mxc://[::1]:8448/abc")
    for bad in [
        "",
        "http://example.org/abc",
        "mxc://example.org",
        "mxc://example.org/",
        "mxc://example.org/a/b",
        "mxc://example.org/a.b",
        "mxc://bad_server/abc",
        "mxc:///abc",
    ]:
        assert not is_valid_mxc_uri(bad), bad


@pytest.mark.parametrize(
    ("identifier", "domain"),
    [
        ("@alice:example.org", "example.org"),
        ("@alice:example.org:8448", "example.org:8448"),
        ("!abc:example.org", "example.org"),
        ("#room:[::1]:80", "[::1]:80"),
        ("$abc:example.org", "example.org"),
        ("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", None),
        (HASH_URL, None),
        ("alice:example.org", None),
        ("", None),
    ],
)
def test_get_domain(identifier: str, domain: str | None) -> None:
    assert get_domain(identifier) == domain
