"""Building events for every room version: format, event ID, content hash, signature."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.core.canonical_json import CanonicalJSONError
from homeserver.core.event_builder import MAX_DEPTH_V1, MAX_DEPTH_V6, build_event, generate_v1_event_id
from homeserver.core.events import Event
from homeserver.core.hashing import (
    check_content_hash,
    compute_event_id,
    reference_hash_base64,
    room_id_for_create_event,
)
from homeserver.core.identifiers import is_valid_event_id, is_valid_room_id
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.core.signing import SignatureError, SigningKey, generate_signing_key, verify_event_signature

RV = KNOWN_ROOM_VERSIONS
ALL_VERSIONS = list(RV.values())
SERVER = "example.org"


def vid(v: RoomVersion) -> str:
    return f"v{v.identifier}"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("test")


def _create(rv: RoomVersion, key: SigningKey) -> Event:
    derived = rv.room_id_from_create_event
    return build_event(
        room_version=rv,
        room_id=None if derived else "!room:example.org",
        type="m.room.create",
        sender="@alice:example.org",
        content={"room_version": rv.identifier}
        if rv.implicit_room_creator
        else {"creator": "@alice:example.org"},
        state_key="",
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
        origin_server_ts=1_700_000_000_000,
        server_name=SERVER,
        signing_key=key,
    )


def _message(rv: RoomVersion, key: SigningKey, create: Event, **extra: Any) -> Event:
    args: dict[str, Any] = {
        "room_version": rv,
        "room_id": create.room_id,
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "content": {"body": "hello", "msgtype": "m.text"},
        "prev_event_ids": [create.event_id],
        "auth_event_ids": [] if rv.room_id_from_create_event else [create.event_id],
        "depth": 2,
        "origin_server_ts": 1_700_000_000_001,
        "server_name": SERVER,
        "signing_key": key,
    }
    args.update(extra)
    return build_event(**args)


def _verify(event: Event, key: SigningKey) -> None:
    verify_event_signature(event.pdu, SERVER, key.key_id, key.verify_key, event.room_version)


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=vid)
def test_round_trip_every_version(rv: RoomVersion, key: SigningKey) -> None:
    create = _create(rv, key)
    msg = _message(rv, key, create)
    for event in (create, msg):
        assert is_valid_event_id(event.event_id, rv)
        assert event.event_id == compute_event_id(event.pdu, rv)
        # An Event rebuilt from the PDU alone (as from federation) agrees.
        assert Event(event.pdu, rv).event_id == event.event_id
        assert check_content_hash(event.pdu)
        _verify(event, key)
        assert "origin" not in event.pdu
        assert set(event.pdu["signatures"]) == {SERVER}
        # Tampering with content breaks the hash; with an essential key, the signature.
        assert not check_content_hash({**event.pdu, "content": {"body": "tampered"}})
        with pytest.raises(SignatureError):
            verify_event_signature(
                {**event.pdu, "origin_server_ts": 1}, SERVER, key.key_id, key.verify_key, rv
            )
        with pytest.raises(SignatureError):
            verify_event_signature(
                event.pdu, SERVER, key.key_id, generate_signing_key("other").verify_key, rv
            )
    assert msg.prev_event_ids() == [create.event_id]
    assert msg.room_id == create.room_id
    assert is_valid_room_id(create.room_id)


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=vid)
def test_event_id_and_reference_formats(rv: RoomVersion, key: SigningKey) -> None:
    create = _create(rv, key)
    msg = _message(rv, key, create, prev_hashes={create.event_id: reference_hash_base64(create.pdu, rv)})
    if rv.identifier in ("1", "2"):
        assert msg.pdu["event_id"] == msg.event_id
        assert msg.event_id.endswith(":" + SERVER) and len(msg.event_id) == 1 + 18 + 1 + len(SERVER)
        assert msg.pdu["prev_events"] == [
            [create.event_id, {"sha256": reference_hash_base64(create.pdu, rv)}]
        ]
        assert msg.pdu["auth_events"] == [
            [create.event_id, {"sha256": reference_hash_base64(create.pdu, rv)}]
        ]
        # Without a known hash the pair carries an empty object.
        unknown = _message(rv, key, create)
        assert unknown.pdu["prev_events"] == [[create.event_id, {}]]
        assert unknown.auth_event_ids() == [create.event_id]
    else:
        assert "event_id" not in msg.pdu
        assert msg.pdu["prev_events"] == [create.event_id]
        assert len(msg.event_id) == 44
        if rv.identifier == "3":
            assert is_valid_event_id(msg.event_id, RV["3"])
        else:
            assert is_valid_event_id(msg.event_id, RV["4"])


def test_v1_event_id_may_be_given(key: SigningKey) -> None:
    rv = RV["1"]
    create = _create(rv, key)
    msg = _message(rv, key, create, event_id="$chosen:example.org")
    assert msg.event_id == msg.pdu["event_id"] == "$chosen:example.org"
    with pytest.raises(ValueError):
        _message(RV["4"], key, _create(RV["4"], key), event_id="$chosen:example.org")


def test_generate_v1_event_id() -> None:
    ids = {generate_v1_event_id("hs.example") for _ in range(50)}
    assert len(ids) == 50
    for eid in ids:
        assert is_valid_event_id(eid, RV["1"]) and eid.endswith(":hs.example")


def test_v12_create_event(key: SigningKey) -> None:
    rv = RV["12"]
    create = _create(rv, key)
    assert "room_id" not in create.pdu
    assert create.pdu["auth_events"] == [] and create.pdu["prev_events"] == []
    assert create.room_id == room_id_for_create_event(create.pdu, rv) == "!" + create.event_id[1:]
    assert ":" not in create.room_id
    with pytest.raises(ValueError):
        build_event(
            room_version=rv, room_id="!r:x", type="m.room.create", sender="@a:x", content={}, state_key="",
            prev_event_ids=[], auth_event_ids=[], depth=1, origin_server_ts=1, server_name="x", signing_key=key,
        )  # fmt: skip
    with pytest.raises(ValueError):
        build_event(
            room_version=rv, room_id=None, type="m.room.create", sender="@a:x", content={}, state_key="",
            prev_event_ids=[], auth_event_ids=["$x"], depth=1, origin_server_ts=1, server_name="x",
            signing_key=key,
        )  # fmt: skip
    # A non-create event needs its room ID.
    with pytest.raises(ValueError):
        _message(rv, key, create, room_id=None)
    # Before v12 the create event carries its room_id.
    assert _create(RV["11"], key).pdu["room_id"] == "!room:example.org"


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=vid)
def test_redacts_placement(rv: RoomVersion, key: SigningKey) -> None:
    create = _create(rv, key)
    target = _message(rv, key, create)
    redaction = _message(
        rv, key, create, type="m.room.redaction", content={"reason": "spam"}, redacts=target.event_id
    )
    if rv.redacts_in_content:
        assert redaction.pdu["content"] == {"reason": "spam", "redacts": target.event_id}
        assert "redacts" not in redaction.pdu
    else:
        assert redaction.pdu["redacts"] == target.event_id
        assert "redacts" not in redaction.pdu["content"]
    assert redaction.redacts == target.event_id
    _verify(redaction, key)
    with pytest.raises(ValueError):
        _message(rv, key, create, redacts=target.event_id)  # not a redaction event


def test_redacts_conflicting_with_content(key: SigningKey) -> None:
    rv = RV["11"]
    create = _create(rv, key)
    with pytest.raises(ValueError):
        _message(rv, key, create, type="m.room.redaction", content={"redacts": "$a"}, redacts="$b")
    same = _message(rv, key, create, type="m.room.redaction", content={"redacts": "$a"}, redacts="$a")
    assert same.redacts == "$a"


def test_state_key_and_unsigned(key: SigningKey) -> None:
    rv = RV["10"]
    create = _create(rv, key)
    name = _message(rv, key, create, type="m.room.name", content={"name": "R"}, state_key="",
                    unsigned={"transaction_id": "t1"})  # fmt: skip
    assert name.is_state and name.state_tuple == ("m.room.name", "")
    assert name.pdu["unsigned"] == {"transaction_id": "t1"}
    # unsigned is outside hash, signature and event ID.
    assert check_content_hash(name.pdu)
    _verify(name, key)
    assert compute_event_id({k: v for k, v in name.pdu.items() if k != "unsigned"}, rv) == name.event_id
    msg = _message(rv, key, create)
    assert not msg.is_state and "unsigned" not in msg.pdu


def test_caller_content_is_not_modified(key: SigningKey) -> None:
    rv = RV["11"]
    content = {"reason": "x"}
    _message(rv, key, _create(rv, key), type="m.room.redaction", content=content, redacts="$t")
    assert content == {"reason": "x"}


def test_strict_canonical_json_from_v6(key: SigningKey) -> None:
    for rv in ALL_VERSIONS:
        create = _create(rv, key)
        if rv.strict_canonicaljson:
            with pytest.raises(CanonicalJSONError):
                _message(rv, key, create, content={"body": "x", "n": 1.5})
            with pytest.raises(CanonicalJSONError):
                _message(rv, key, create, content={"n": 2**53})
        else:
            # Older rooms tolerate what they always have.
            event = _message(rv, key, create, content={"body": "x", "n": 2**53})
            assert check_content_hash(event.pdu)


def test_depth_is_capped(key: SigningKey) -> None:
    for rv, cap in ((RV["5"], MAX_DEPTH_V1), (RV["6"], MAX_DEPTH_V6)):
        create = _create(rv, key)
        assert _message(rv, key, create, depth=cap + 10).depth == cap
        assert _message(rv, key, create, depth=cap).depth == cap
