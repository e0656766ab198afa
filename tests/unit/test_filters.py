"""core.filters: parsing filter JSON and matching events (PDU or client form)."""

from __future__ import annotations

import pytest

from homeserver.core import filters
from homeserver.core.filters import (
    FilterError,
    RoomEventFilter,
    parse_room_event_filter,
    parse_room_event_filter_json,
)


def ev(type: str = "m.room.message", sender: str = "@a:hs", room: str = "!r:hs", **content: object) -> dict:
    return {"type": type, "sender": sender, "room_id": room, "content": dict(content)}


def test_public_api() -> None:
    for name in filters.__all__:
        assert hasattr(filters, name)
    assert {"RoomEventFilter", "parse_room_event_filter", "FilterError"} <= set(filters.__all__)


def test_empty_filter_matches_everything() -> None:
    f = parse_room_event_filter({})
    assert f == RoomEventFilter() == parse_room_event_filter(None) == parse_room_event_filter_json(None)
    assert f.is_unrestricted
    assert f.matches(ev()) and f.matches(ev("m.room.member"))


@pytest.mark.parametrize(
    ("raw", "event", "expected"),
    [
        ({"types": ["m.room.message"]}, ev(), True),
        ({"types": ["m.room.message"]}, ev("m.room.member"), False),
        ({"types": ["m.room.*"]}, ev("m.room.member"), True),
        ({"types": ["m.*.member"]}, ev("m.room.member"), True),
        ({"types": ["m.room.*"]}, ev("org.example"), False),
        ({"types": ["*"]}, ev("anything"), True),
        ({"types": []}, ev(), False),
        ({"not_types": ["m.room.*"]}, ev(), False),
        ({"types": ["m.room.message"], "not_types": ["m.room.message"]}, ev(), False),
        ({"types": ["m.room.me"]}, ev(), False),
        ({"types": ["m.room.messag?"]}, ev(), False),  # only * is special
        ({"types": ["m.room.(message)"]}, ev(), False),  # no regex leaks through
        ({"senders": ["@a:hs"]}, ev(), True),
        ({"senders": ["@b:hs"]}, ev(), False),
        ({"senders": []}, ev(), False),
        ({"senders": ["@a:hs"], "not_senders": ["@a:hs"]}, ev(), False),
        ({"rooms": ["!r:hs"]}, ev(), True),
        ({"rooms": ["!x:hs"]}, ev(), False),
        ({"not_rooms": ["!r:hs"]}, ev(), False),
        ({"contains_url": True}, ev(url="mxc://hs/x"), True),
        ({"contains_url": True}, ev(body="x"), False),
        ({"contains_url": True}, ev(url=5), False),
        ({"contains_url": False}, ev(body="x"), True),
        ({"contains_url": False}, ev(url="mxc://hs/x"), False),
    ],
)
def test_matching(raw: dict, event: dict, expected: bool) -> None:
    assert parse_room_event_filter(raw).matches(event) is expected


def test_pdu_without_room_id_matches_room_filter_by_other_fields() -> None:
    # A v12 create event PDU has no room_id: room restrictions cannot exclude it here.
    pdu = {"type": "m.room.create", "sender": "@a:hs", "content": {}}
    assert parse_room_event_filter({"rooms": ["!r:hs"], "types": ["m.room.create"]}).matches(pdu)


def test_flags_and_limit() -> None:
    f = parse_room_event_filter({"lazy_load_members": True, "include_redundant_members": True, "limit": 5})
    assert f.lazy_load_members and f.include_redundant_members and f.limit == 5
    assert parse_room_event_filter({"limit": 10**9}).limit == filters.MAX_FILTER_LIMIT
    assert parse_room_event_filter({"unknown_key": 1}) == RoomEventFilter()


@pytest.mark.parametrize(
    "raw",
    [
        [], "x", 3,
        {"types": "m.room.message"}, {"types": [1]}, {"not_types": [None]}, {"senders": "@a:hs"},
        {"limit": "10"}, {"limit": -1}, {"limit": True}, {"limit": 1.5},
        {"contains_url": "yes"}, {"lazy_load_members": 1}, {"rooms": [{}]},
    ],
)
def test_bad_shapes(raw: object) -> None:
    with pytest.raises(FilterError) as e:
        parse_room_event_filter(raw)
    assert e.value.errcode == "M_BAD_JSON"


def test_bad_json_text() -> None:
    with pytest.raises(FilterError) as e:
        parse_room_event_filter_json("{not json")
    assert e.value.errcode == "M_INVALID_PARAM"
    assert parse_room_event_filter_json('{"types": ["a"]}').types == ("a",)


def test_event_filter() -> None:
    f = filters.parse_event_filter({"types": ["m.presence"], "not_senders": ["@x:hs"]})
    assert f.matches({"type": "m.presence", "sender": "@a:hs"})
    assert not f.matches({"type": "m.presence", "sender": "@x:hs"})
    assert f.filter([{"type": "m.typing", "sender": "@a:hs"}]) == []
