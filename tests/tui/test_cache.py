"""The local cache: the model through JSON and SQLite and back, bounds, file safety, cold fallbacks."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tui_client.cache import FILE_NAME, StateCache, account_key
from tui_client.matrix import ApiRequest
from tui_client.model import ClientState, Gap, TimelineEvent
from tui_client.screens import LoginScreen, MainScreen
from tui_client.snapshot import restore, room_to_json
from tui_client.widgets import RoomList, Timeline

from .conftest import make_app, settle
from .recorded import SESSION, RecordedTransport, error
from .sync_data import ALICE, BOB, ME, T0, ev, initial_sync, joined, member, state, sync

GENERAL = "!general:example.org"
DM = "!dm:example.org"
HS = "http://hs.test"


def view(model: ClientState) -> dict[str, Any]:
    """Everything a user can see of a model, as plain data, to compare two models."""
    rooms = {}
    for room in model.room_list():
        timeline: list[Any] = []
        for entry in room.timeline:
            if isinstance(entry, Gap):
                timeline.append(("gap", entry.token, entry.anchor))
            else:
                timeline.append((entry.event_id, entry.sender, entry.type, entry.origin_server_ts, entry.body,
                                 entry.edited, entry.redacted, entry.msgtype, entry.reply_to,
                                 {k: dict(v) for k, v in entry.reactions.items()}, entry.state_key))
        rooms[room.room_id] = {
            "name": room.display_name(model.user_id), "topic": room.topic, "membership": room.membership,
            "direct": room.is_direct, "badges": (room.notification_count, room.highlight_count),
            "inviter": room.inviter, "members": [(m.user_id, m.membership, room.member_name(m.user_id))
                                                 for m in room.member_list()],
            "receipts": dict(room.receipts), "fully_read": room.fully_read, "timeline": timeline,
            "pending": sorted(room.pending_relations), "activity": room.last_activity_ts,
        }
    return {"order": [r.room_id for r in model.room_list()], "rooms": rooms, "next_batch": model.next_batch,
            "direct": model.direct, "account_data": model.account_data}


def busy_model() -> ClientState:
    """A model with every kind of entry the timeline keeps: edits, reactions, redactions, gaps."""
    model = ClientState(ME)
    model.apply_sync(initial_sync())
    react = ev("$re", BOB, type="m.reaction", content={
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$g1", "key": "👍"}})
    edit = ev("$ed", ALICE, ts=T0 + 130_000, content={
        "msgtype": "m.text", "body": "* Good morning all", "m.new_content": {"msgtype": "m.text", "body": "Good morning all"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$g1"}})
    early_edit = ev("$early", ALICE, content={"body": "* later", "m.new_content": {"body": "later"},
                                              "m.relates_to": {"rel_type": "m.replace", "event_id": "$not-loaded"}})
    reply = ev("$rp", ALICE, ts=T0 + 140_000, content={
        "msgtype": "m.text", "body": "> <@me:example.org> Thanks Bob!\n\nany time",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$g3"}}})
    model.apply_sync(sync("s2", join={
        GENERAL: joined([react, edit, early_edit, reply,
                         ev("$gone", BOB, "oops", ts=T0 + 150_000),
                         ev("$x", BOB, type="m.room.redaction", content={"redacts": "$gone"}, ts=T0 + 151_000),
                         member("@carol:example.org", "Carol", ts=T0 + 160_000)],
                        ephemeral=[{"type": "m.receipt", "content": {"$g3": {"m.read": {ALICE: {"ts": 1}}}}}],
                        unread=(3, 1)),
        DM: joined([ev("$d2", ALICE, "still there?", ts=T0 + 170_000)], limited=True, prev_batch="dm-gap")}))
    model.rooms[GENERAL].fully_read = "$g2"
    return model


def test_the_model_survives_json_and_back_exactly() -> None:
    model = busy_model()
    rooms = [room_to_json(room) for room in model.rooms.values()]
    restored = restore(ME, model.next_batch, model.account_data, rooms)
    assert view(restored) == view(model)
    assert restored.catching_up and restored.next_batch == "s2"
    # It goes on as the original does: a redacted reaction and a new edit apply to both alike.
    later = sync("s3", join={GENERAL: joined([
        ev("$x2", BOB, type="m.room.redaction", content={"redacts": "$re"}, ts=T0 + 200_000),
        ev("$x3", ALICE, type="m.room.redaction", content={"redacts": "$ed"}, ts=T0 + 201_000),
        ev("$n", BOB, "news", ts=T0 + 202_000)])})
    model.apply_sync(later)
    update = restored.apply_sync(later)
    assert view(restored) == view(model)
    assert update.notifications == []  # a catch-up after a restart brings no popups
    assert restored.rooms[GENERAL].event("$g1").body == "Good morning everyone"


def test_local_echoes_are_not_cached() -> None:
    model = busy_model()
    model.add_local_echo(GENERAL, "txn1", "m.room.message", {"msgtype": "m.text", "body": "unsent"}, T0 + 300_000)
    data = room_to_json(model.rooms[GENERAL])
    assert all(item.get("content", {}).get("body") != "unsent" for item in data["timeline"])


def test_timelines_are_cut_to_the_last_events_with_a_gap_that_still_paginates() -> None:
    model = ClientState(ME)
    events = [ev(f"$e{i}", ALICE, f"message {i}", ts=T0 + i) for i in range(120)]
    model.apply_sync(sync("s1", join={GENERAL: joined(events, limited=True, prev_batch="start")}))
    restored = restore(ME, "s1", {}, [room_to_json(model.rooms[GENERAL], max_events=50)])
    room = restored.rooms[GENERAL]
    assert [e.event_id for e in room.events()] == [f"$e{i}" for i in range(70, 120)]
    gap = room.timeline[0]
    assert isinstance(gap, Gap) and gap.token == "" and gap.anchor == "$e70"
    # The screen asks /context of the anchor for a token; the page then fills the gap in order.
    restored.apply_messages(GENERAL, gap, {"chunk": [ev(f"$e{i}", ALICE, f"message {i}", ts=T0 + i)
                                                     for i in range(69, 59, -1)], "end": "older"})
    assert [e.event_id for e in room.events()][:11] == [f"$e{i}" for i in range(60, 71)]
    assert isinstance(room.timeline[0], Gap) and room.timeline[0].token == "older"
    # A short timeline keeps its own gap and needs no anchor.
    short = room_to_json(model.rooms[GENERAL], max_events=200)
    assert short["timeline"][0] == {"gap": "start", "anchor": None} and len(short["timeline"]) == 121


def test_cache_file_round_trip_is_private_and_incremental(tmp_path: Path) -> None:
    cache = StateCache.for_account(tmp_path / "cache", HS, ME)
    model = busy_model()
    assert cache.save(model)
    assert cache.path == tmp_path / "cache" / account_key(HS, ME) / FILE_NAME
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    loaded = cache.load()
    assert loaded is not None and view(loaded) == view(model)

    # Only what changed is written next time; leaving a room deletes its row.
    model.apply_sync(sync("s3", join={DM: joined([ev("$d3", ALICE, "bye", ts=T0 + 400_000)])},
                          leave={"!random:example.org": {}}))
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE rooms SET data = 'written before' WHERE room_id = ?", (GENERAL,))
    snapshot = cache.snapshot(model)
    assert set(snapshot["rooms"]) == {DM} and snapshot["removed"] == ["!random:example.org"]
    cache.write(snapshot)
    with sqlite3.connect(cache.path) as db:
        rows = dict(db.execute("SELECT room_id, data FROM rooms"))
    assert rows[GENERAL] == "written before" and "!random:example.org" not in rows
    cache.save(model, everything=True)
    again = cache.load()
    assert again is not None and view(again) == view(model) and again.next_batch == "s3"
    for path in cache.path.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    cache.close()


def test_missing_corrupt_or_foreign_caches_mean_a_cold_start(tmp_path: Path) -> None:
    cache = StateCache.for_account(tmp_path, HS, ME)
    assert cache.load() is None  # nothing there
    cache.save(busy_model())
    assert StateCache(cache.path, HS, "@someone-else:example.org").load() is None  # not this account
    assert not cache.path.exists()  # ... and it is gone

    cache.save(busy_model(), everything=True)
    cache.path.write_bytes(b"this is not a database" * 100)
    assert cache.load() is None and not cache.path.exists()

    cache.save(busy_model(), everything=True)
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE rooms SET data = '{\"room_id\": 5}' WHERE room_id = ?", (GENERAL,))
    assert cache.load() is None and not cache.path.exists()

    cache.save(busy_model(), everything=True)
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'version'")
    assert cache.load() is None
    cache.close()


def test_nothing_is_written_before_the_first_sync(tmp_path: Path) -> None:
    cache = StateCache.for_account(tmp_path, HS, ME)
    assert cache.save(ClientState(ME))
    assert not cache.path.exists()
    cache.close()


def test_restored_model_keeps_state_members_and_m_direct() -> None:
    model = busy_model()
    model.apply_sync(sync("s3", join={GENERAL: joined([], state_events=[state("m.room.topic", {"topic": "New"})])}))
    restored = restore(ME, "s3", model.account_data, [room_to_json(r) for r in model.rooms.values()])
    assert restored.rooms[GENERAL].topic == "New"
    assert restored.direct == {ALICE: [DM]} and restored.rooms[DM].is_direct
    assert "@carol:example.org" in restored.rooms[GENERAL].members
    assert not restored.rooms[GENERAL].members_loaded  # the full list is fetched again when shown
    item = restored.rooms[GENERAL].event("$rp")
    assert isinstance(item, TimelineEvent) and item.reply_to == "$g3" and item.body == "any time"


# -- the app with a cache (Pilot) -------------------------------------------------------------------


def sync_requests(transport: RecordedTransport) -> list[ApiRequest]:
    return [r for r in transport.requests if r.path == "/_matrix/client/v3/sync"]


async def wait_until(pilot: Pilot, check: Callable[[], Any], what: str) -> Any:
    for _ in range(300):
        value = check()
        if value:
            return value
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def warm_cache(root: Path) -> StateCache:
    cache = StateCache.for_account(root, SESSION.homeserver, SESSION.user_id)
    cache.save(busy_model())
    return cache


async def test_warm_cache_shows_the_room_list_before_the_first_sync_returns(tmp_path: Path) -> None:
    warm_cache(tmp_path)
    app, transport = make_app([], cache_root=tmp_path)  # no sync answer is queued: the first /sync hangs
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: sync_requests(transport), "the catch-up sync request")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MainScreen) and app.restored_from_cache
        assert screen.query_one(RoomList).room_ids() == ["!books:example.org", DM, GENERAL, "!random:example.org"]
        assert app.model.next_batch == "s2"  # nothing synced: all of this came from the cache
        screen.open_room(GENERAL)
        await pilot.pause()
        assert "any time" in str(screen.query_one(Timeline).get_option("$rp").prompt)
        # It catches up from the cached token, with the timeout=0 first request as always.
        first = sync_requests(transport)[0]
        assert first.params["since"] == "s2" and first.params["timeout"] == "0"
        transport.push_sync(sync("s3", join={GENERAL: joined([ev("$new", BOB, "while you were away",
                                                                  ts=T0 + 500_000)])}))
        await settle(pilot, "s3")
        assert app.model.rooms[GENERAL].event("$new") is not None
    # Leaving writes what the sync brought.
    cached = StateCache.for_account(tmp_path, SESSION.homeserver, SESSION.user_id).load()
    assert cached is not None and cached.next_batch == "s3" and cached.rooms[GENERAL].event("$new") is not None


async def test_cold_start_writes_the_cache_on_exit(tmp_path: Path) -> None:
    app, transport = make_app([initial_sync()], cache_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, "s1")
        assert not app.restored_from_cache and "since" not in sync_requests(transport)[0].params
    cached = StateCache.for_account(tmp_path, SESSION.homeserver, SESSION.user_id).load()
    assert cached is not None and cached.next_batch == "s1" and set(cached.rooms) == set(app.model.rooms)


async def test_corrupt_cache_falls_back_to_a_cold_start(tmp_path: Path) -> None:
    cache = warm_cache(tmp_path)
    cache.path.write_bytes(b"\x00garbage" * 64)
    app, transport = make_app([initial_sync()], cache_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, "s1")
        assert not app.restored_from_cache
        assert "since" not in sync_requests(transport)[0].params
        assert app.screen.query_one(RoomList).room_ids() == ["!books:example.org", DM, GENERAL, "!random:example.org"]


async def test_a_token_the_server_does_not_know_restarts_cold(tmp_path: Path) -> None:
    warm_cache(tmp_path)
    app, transport = make_app([error(400, "M_INVALID_PARAM", error="Invalid 'since' token"), initial_sync()],
                              cache_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, "s1")
        requests = sync_requests(transport)
        assert requests[0].params["since"] == "s2" and "since" not in requests[1].params
        assert not app.restored_from_cache
        assert app.model.rooms[GENERAL].event("$rp") is None  # nothing of the old cache is left
        assert app.screen.query_one(RoomList).room_ids() == ["!books:example.org", DM, GENERAL, "!random:example.org"]


async def test_a_session_that_ends_deletes_its_cache(tmp_path: Path) -> None:
    cache = warm_cache(tmp_path)
    app, _ = make_app([error(401, "M_UNKNOWN_TOKEN")], cache_root=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")
        assert not cache.path.exists()


async def test_scrolling_past_the_cached_events_loads_history_before_them(tmp_path: Path) -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={GENERAL: joined(
        [member(ME, "Me"), *(ev(f"$e{i}", ALICE, f"message {i}", ts=T0 + i) for i in range(80))],
        limited=True, prev_batch="start", state_events=[state("m.room.name", {"name": "General"})])}))
    cache = StateCache.for_account(tmp_path, SESSION.homeserver, SESSION.user_id, max_events=20)
    cache.save(model)
    app, transport = make_app([], cache_root=tmp_path)
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/context/%24e60",
                    {"event": ev("$e60", ALICE, "message 60", ts=T0 + 60), "start": "before-e60", "end": "x",
                     "events_before": [], "events_after": [], "state": []})
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/messages",
                    {"chunk": [ev(f"$e{i}", ALICE, f"message {i}", ts=T0 + i) for i in range(59, 49, -1)],
                     "start": "before-e60", "end": "before-e50"})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: sync_requests(transport), "the catch-up sync request")
        room = app.model.rooms[GENERAL]
        assert room.events()[0].event_id == "$e60"
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        timeline.highlighted = 0  # the top row: the gap where the cache cut the history
        await wait_until(pilot, lambda: room.event("$e50"), "the older page")
        context = next(r for r in transport.requests if "/context/" in r.path)
        assert context.params["limit"] == "0"
        messages = next(r for r in transport.requests if r.path.endswith("/messages"))
        assert messages.params["from"] == "before-e60"
        assert [e.event_id for e in room.events()][:11] == [f"$e{i}" for i in range(50, 61)]
        assert isinstance(room.timeline[0], Gap) and room.timeline[0].token == "before-e50"
