"""The in-memory view of the newest events: ordering, windows, memberships, and when it must say "unknown"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.core.events import Event
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.infra.batch import BatchLoader
from homeserver.services.stream_cache import EventStreamCache, StreamSequencer
from homeserver.storage.events import StoredEvent

V1 = KNOWN_ROOM_VERSIONS["1"]
ROOM = "!r:x"


def stored(pos: int, *, type: str = "m.room.message", state_key: str | None = None,
           content: dict[str, Any] | None = None, room: str = ROOM, redacts: str | None = None) -> StoredEvent:
    pdu: dict[str, Any] = {"event_id": f"${pos}:x", "room_id": room, "type": type, "sender": "@a:x",
                           "content": content or {}, "depth": pos, "origin_server_ts": pos}
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        pdu["redacts"] = redacts
    return StoredEvent(Event(pdu, V1), pos, pos, {}, None, None)


def member(pos: int, user: str, membership: str = "join", room: str = ROOM) -> StoredEvent:
    return stored(pos, type="m.room.member", state_key=user, content={"membership": membership}, room=room)


def positions(events: list[StoredEvent] | None) -> list[int] | None:
    return None if events is None else [s.stream_ordering for s in events]


# -- sequencer ---------------------------------------------------------------------
def test_sequencer_applies_in_position_order_whatever_the_finishing_order() -> None:
    applied: list[int] = []
    seq = StreamSequencer(applied.append)
    assert (seq.allocate(), seq.allocate()) == (1, 2)
    seq.finish(2, 2)
    assert applied == []  # 1 is still in flight
    assert seq.allocate() == 3
    seq.finish(1, 1)
    assert applied == [1, 2]
    seq.finish(3, 3)
    assert applied == [1, 2, 3]


def test_sequencer_abort_releases_later_positions() -> None:
    applied: list[int] = []
    seq = StreamSequencer(applied.append)
    seq.start_after(4)
    assert (seq.allocate(), seq.allocate()) == (5, 6)
    seq.finish(6, 6)
    seq.abort(5)
    assert applied == [6]


async def test_sequencer_applied_waits_for_lower_positions() -> None:
    applied: list[int] = []
    seq = StreamSequencer(applied.append)
    seq.allocate(), seq.allocate()
    seq.finish(2, 2)
    waiter = asyncio.ensure_future(seq.applied(2))
    await asyncio.sleep(0)
    assert not waiter.done()
    seq.finish(1, 1)
    await asyncio.wait_for(waiter, 1)
    assert applied == [1, 2]
    await asyncio.wait_for(seq.applied(1), 1)  # already applied: returns at once


def test_sequencer_survives_a_failing_apply() -> None:
    seen: list[int] = []

    def apply(p: int) -> None:
        seen.append(p)
        if p == 1:
            raise RuntimeError("boom")

    seq = StreamSequencer(apply)
    seq.allocate(), seq.allocate()
    seq.finish(1, 1)
    seq.finish(2, 2)
    assert seen == [1, 2]


# -- room windows ------------------------------------------------------------------
def test_window_of_a_quiet_room() -> None:
    cache = EventStreamCache(start=10)
    assert cache.window(ROOM, 10, 20, 5) == []  # nothing since start
    assert cache.window(ROOM, 9, 20, 5) is None  # before start: only the database knows


def test_window_reads_the_tail_up_to_the_token() -> None:
    cache = EventStreamCache(start=10)
    for p in (11, 13, 14):
        cache.apply(stored(p))
    assert positions(cache.window(ROOM, 10, 20, 5)) == [11, 13, 14]
    assert positions(cache.window(ROOM, 11, 13, 5)) == [13]
    assert positions(cache.window(ROOM, 14, 20, 5)) == []
    assert positions(cache.window(ROOM, 10, 20, 1)) == [13, 14]  # limit + 1 newest: the caller sees the gap


def test_window_past_the_trimmed_tail_is_unknown() -> None:
    cache = EventStreamCache(start=0, tail_size=3)
    for p in range(1, 6):
        cache.apply(stored(p))
    assert positions(cache.window(ROOM, 2, 10, 5)) == [3, 4, 5]
    assert cache.window(ROOM, 1, 10, 5) is None


def test_state_and_redactions_send_windows_across_them_to_the_database() -> None:
    cache = EventStreamCache(start=0)
    cache.apply(stored(1))
    cache.apply(stored(2, type="m.room.topic", state_key="", content={"topic": "t"}))
    cache.apply(stored(3))
    assert cache.window(ROOM, 1, 10, 5) is None
    assert positions(cache.window(ROOM, 2, 10, 5)) == [3]
    cache.apply(stored(4, type="m.room.redaction", redacts="$3:x"))
    assert cache.window(ROOM, 2, 10, 5) is None


# -- memberships -------------------------------------------------------------------
async def test_member_events_as_of_a_position() -> None:
    cache = EventStreamCache(start=0)

    async def load() -> list[dict[str, Any]]:
        return [{"user_id": "@a:x", "event_id": "$1:x", "stream_ordering": 1}]

    assert cache.member_events(ROOM, ["@a:x"], 5) is None  # not loaded
    await cache.load_members(ROOM, load)
    assert cache.member_events(ROOM, ["@a:x", "@nobody:x"], 5) == {"@a:x": "$1:x"}
    cache.apply(member(7, "@a:x", "leave"))
    assert cache.member_events(ROOM, ["@a:x"], 8) == {"@a:x": "$7:x"}
    assert cache.member_events(ROOM, ["@a:x"], 6) is None  # changed after 6: ask the database


async def test_a_member_load_racing_a_change_is_not_kept() -> None:
    cache = EventStreamCache(start=0)

    async def load() -> list[dict[str, Any]]:
        cache.apply(member(9, "@b:x"))  # a membership commits while the rows are read
        return [{"user_id": "@a:x", "event_id": "$1:x", "stream_ordering": 1}]

    await cache.load_members(ROOM, load)
    assert not cache.has_members(ROOM)


def test_user_memberships_are_dropped_on_change_and_forget() -> None:
    cache = EventStreamCache(start=0)
    rows = [{"room_id": ROOM, "membership": "join"}]
    token = cache.user_memberships_token("@a:x")
    cache.store_user_memberships("@a:x", 10, rows, token)
    assert cache.user_memberships("@a:x", 12) == rows
    cache.apply(member(11, "@a:x", "leave"))
    assert cache.user_memberships("@a:x", 12) is None
    token = cache.user_memberships_token("@a:x")
    cache.store_user_memberships("@a:x", 12, rows, token)
    assert cache.user_memberships("@a:x", 12) == rows
    cache.forgot("@a:x")
    assert cache.user_memberships("@a:x", 12) is None


def test_user_memberships_from_a_load_that_raced_a_change_are_not_kept() -> None:
    cache = EventStreamCache(start=0)
    token = cache.user_memberships_token("@a:x")
    cache.apply(member(5, "@a:x"))
    cache.store_user_memberships("@a:x", 4, [], token)
    assert cache.user_memberships("@a:x", 4) is None
    assert cache.user_membership_changed_after("@a:x", 4)
    assert not cache.user_membership_changed_after("@a:x", 5)


def test_member_changes_in_rooms() -> None:
    cache = EventStreamCache(start=3)
    cache.apply(member(4, "@b:x", room="!other:x"))
    assert cache.member_changes_after([ROOM], 3) is False
    assert cache.member_changes_after([ROOM, "!other:x"], 3) is True
    assert cache.member_changes_after([ROOM], 2) is None


# -- batch loader ------------------------------------------------------------------
async def test_batch_loader_makes_one_call_for_one_loop_turn() -> None:
    calls: list[list[int]] = []

    async def fetch(keys: Any) -> dict[int, str]:
        calls.append(sorted(keys))
        return {k: f"v{k}" for k in keys if k != 3}

    loader: BatchLoader[int, str] = BatchLoader(fetch, lambda: "none")
    results = await asyncio.gather(loader.load(1), loader.load(2), loader.load(2), loader.load_many([3, 1]))
    assert results == ["v1", "v2", "v2", ["none", "v1"]]
    assert calls == [[1, 2, 3]]
    assert await loader.load(4) == "v4"
    assert len(calls) == 2


async def test_batch_loader_failure_reaches_every_waiter() -> None:
    async def fetch(keys: Any) -> dict[int, str]:
        raise OSError("database gone")

    loader: BatchLoader[int, str] = BatchLoader(fetch, str)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    with pytest.raises(OSError):
        await loader.load(3)


def test_sequencer_allocates_after_the_stored_positions() -> None:
    applied: list[int] = []
    seq = StreamSequencer(applied.append)
    seq.start_after(41)
    a, b = seq.allocate(), seq.allocate()
    assert (a, b) == (42, 43)
    seq.finish(b, b)
    assert applied == []
    seq.abort(a)  # a rolled back: nothing waits for it
    assert applied == [43]
    assert seq.allocate() == 44
