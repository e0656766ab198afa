"""Power-level defaults and parsing per room version (homeserver/core/power_levels.py)."""

from __future__ import annotations

import math

import pytest

from homeserver.core.events import Event
from homeserver.core.power_levels import (
    get_creators,
    get_named_level,
    get_required_level_for_event,
    get_user_power_level,
    get_user_power_level_from_content,
    parse_power_level,
)
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS

RV = KNOWN_ROOM_VERSIONS
ALL = list(RV)
STRINGY = [v for v in ALL if not RV[v].enforce_int_power_levels]  # v1-v9
FLOATY = [v for v in ALL if not RV[v].strict_canonicaljson]  # v1-v5


def create_event(version: str, sender: str = "@alice:a.test", **extra: object) -> Event:
    rv = RV[version]
    content: dict[str, object] = {"room_version": version, **extra}
    if not rv.implicit_room_creator:
        content["creator"] = sender
    pdu: dict[str, object] = {"type": "m.room.create", "state_key": "", "sender": sender, "content": content}
    if not rv.room_id_from_create_event:
        pdu["room_id"] = "!r:a.test"
    return Event(pdu, rv, event_id="$create:a.test")


def pl_event(version: str, content: dict[str, object]) -> Event:
    pdu = {
        "type": "m.room.power_levels",
        "state_key": "",
        "sender": "@alice:a.test",
        "room_id": "!r:a.test",
        "content": content,
    }
    return Event(pdu, RV[version], event_id="$pl:a.test")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("100", 100), ("000100", 100), ("+100", 100), ("-100", -100), (" 100 ", 100), (" +100 ", 100)],
)
@pytest.mark.parametrize("version", STRINGY)
def test_stringy_levels_accepted_before_v10(version: str, raw: str, expected: int) -> None:
    assert parse_power_level(raw, RV[version]) == expected


@pytest.mark.parametrize("raw", ["1.5", "1e3", "", " ", "1_000", "abc", "١٠", "+-1"])
def test_malformed_strings_are_not_levels(raw: str) -> None:
    assert parse_power_level(raw, RV["1"]) is None


@pytest.mark.parametrize("version", [v for v in ALL if v not in STRINGY])
@pytest.mark.parametrize("raw", ["100", 50.0, True, None, [], {}])
def test_v10_plus_accepts_only_integers(version: str, raw: object) -> None:
    assert parse_power_level(raw, RV[version]) is None
    assert parse_power_level(100, RV[version]) == 100


@pytest.mark.parametrize("version", FLOATY)
def test_floats_truncated_before_v6(version: str) -> None:
    assert parse_power_level(50.57, RV[version]) == 50
    assert parse_power_level(5.114698e4, RV[version]) == 51146
    assert parse_power_level(-1.5, RV[version]) == -1
    assert parse_power_level(math.inf, RV[version]) is None
    assert parse_power_level(math.nan, RV[version]) is None


@pytest.mark.parametrize("version", ["6", "7", "8", "9"])
def test_floats_refused_from_v6(version: str) -> None:
    assert parse_power_level(50.0, RV[version]) is None


def test_named_level_defaults_without_power_levels_event() -> None:
    assert get_named_level(None, "ban") == 50
    assert get_named_level(None, "kick") == 50
    assert get_named_level(None, "redact") == 50
    assert get_named_level(None, "invite") == 0
    assert get_named_level(None, "events_default") == 0
    assert get_named_level(None, "state_default") == 50
    assert get_named_level(None, "users_default") == 0
    assert get_named_level(None, "notifications.room") == 50
    assert get_named_level(None, "ban", 7) == 7


def test_named_level_reads_content_and_falls_back() -> None:
    content = {"ban": 80, "invite": "25", "notifications": {"room": 10}, "kick": "junk"}
    assert get_named_level(content, "ban") == 80
    assert get_named_level(content, "invite", room_version=RV["9"]) == 25
    assert get_named_level(content, "invite", room_version=RV["10"]) == 0  # not an integer in v10
    assert get_named_level(content, "notifications.room") == 10
    assert get_named_level({"notifications": {}}, "notifications.room") == 50
    assert get_named_level(content, "kick") == 50  # unreadable -> default
    assert get_named_level({}, "state_default") == 50


def test_required_level() -> None:
    content = {"events": {"m.room.name": 70, "m.custom": 5}, "state_default": 40, "events_default": 3}
    assert get_required_level_for_event("m.room.name", True, content) == 70
    assert get_required_level_for_event("m.custom", False, content) == 5
    assert get_required_level_for_event("m.room.topic", True, content) == 40
    assert get_required_level_for_event("m.room.message", False, content) == 3
    assert get_required_level_for_event("m.room.topic", True, None) == 50
    assert get_required_level_for_event("m.room.message", False, None) == 0
    assert get_required_level_for_event("m.room.topic", True, {}) == 50


@pytest.mark.parametrize("version", ALL)
def test_user_level_without_power_levels_event(version: str) -> None:
    create = create_event(version)
    state = {("m.room.create", ""): create}
    expected_creator = math.inf if RV[version].privileged_creators else 100
    assert get_user_power_level("@alice:a.test", state, RV[version]) == expected_creator
    assert get_user_power_level("@bob:a.test", state, RV[version]) == 0


@pytest.mark.parametrize("version", ALL)
def test_user_level_from_power_levels_event(version: str) -> None:
    rv = RV[version]
    create = create_event(version)
    pl = pl_event(version, {"users": {"@bob:b.test": 42}, "users_default": 7})
    state = {("m.room.create", ""): create, ("m.room.power_levels", ""): pl}
    assert get_user_power_level("@bob:b.test", state, rv) == 42
    assert get_user_power_level("@carol:c.test", state, rv) == 7
    # The creator has no special level once a power-levels event exists, until v12.
    assert get_user_power_level("@alice:a.test", state, rv) == (math.inf if rv.privileged_creators else 7)


def test_v1_to_v10_creator_is_content_creator() -> None:
    rv = RV["10"]
    create = Event(
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@alice:a.test",
            "room_id": "!r:a.test",
            "content": {"creator": "@other:a.test"},
        },
        rv,
        event_id="$c:a.test",
    )
    assert get_creators(create, rv) == {"@other:a.test"}
    assert get_user_power_level_from_content("@other:a.test", None, create, rv) == 100
    assert get_user_power_level_from_content("@alice:a.test", None, create, rv) == 0


def test_v11_creator_is_sender_and_ignores_additional_creators() -> None:
    create = create_event("11", additional_creators=["@bob:b.test"])
    assert get_creators(create, RV["11"]) == {"@alice:a.test"}


def test_v12_additional_creators_are_infinite() -> None:
    create = create_event("12", additional_creators=["@bob:b.test"])
    rv = RV["12"]
    assert get_creators(create, rv) == {"@alice:a.test", "@bob:b.test"}
    content = {"users": {"@carol:c.test": 100}}
    assert get_user_power_level_from_content("@bob:b.test", content, create, rv) == math.inf
    assert get_user_power_level_from_content("@carol:c.test", content, create, rv) == 100


@pytest.mark.parametrize("version", STRINGY)
def test_stringy_user_levels_read(version: str) -> None:
    rv = RV[version]
    content = {"users": {"@bob:b.test": " 60 "}, "users_default": "5"}
    assert get_user_power_level_from_content("@bob:b.test", content, None, rv) == 60
    assert get_user_power_level_from_content("@x:b.test", content, None, rv) == 5
