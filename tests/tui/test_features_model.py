"""Pure parts of members, search context, read position, media and notifications (plain pytest)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tui_client.config import Settings
from tui_client.media import (
    MediaCache,
    downloads_dir,
    safe_filename,
    save_media,
    unique_path,
    wants_thumbnail,
)
from tui_client.model import ClientState, Gap, Notification, TimelineEvent
from tui_client.notify import DesktopNotifier, notify_send_argv
from tui_client.present import (
    NEW_MESSAGES_ID,
    member_count_label,
    member_row,
    notification_text,
    should_notify,
    timeline_lines,
)
from tui_client.render import sender_colour
from tui_client.screens.people import parse_invitees

from .sync_data import ALICE, BOB, ME, T0, ev, initial_sync, joined, member, sync

GENERAL = "!general:example.org"
DM = "!dm:example.org"
CAROL = "@carol:example.org"


def loaded() -> ClientState:
    model = ClientState(ME)
    model.apply_sync(initial_sync())
    return model


# -- members and presence -----------------------------------------------------------------------

def test_members_response_completes_the_lazy_loaded_list_and_sorts_joined_first() -> None:
    model = loaded()
    room = model.rooms["!random:example.org"]
    assert not room.members_loaded and {m.user_id for m in room.member_list()} == {ME, ALICE}
    model.apply_members(room.room_id, {"chunk": [
        member(ME, "Me"), member(ALICE, "Alice"), member(BOB, "bob"), member(CAROL, "Carol", "invite"),
        member("@gone:example.org", "Gone", "leave")]})
    assert room.members_loaded
    assert [m.user_id for m in room.member_list()] == [ALICE, BOB, ME, CAROL]
    assert member_count_label(room).plain == "3 members, 1 invited"


def test_presence_from_sync_is_kept_and_reported() -> None:
    model = loaded()
    update = model.apply_sync({"next_batch": "s2", "presence": {"events": [
        {"type": "m.presence", "sender": ALICE, "content": {"presence": "online", "currently_active": True}},
        {"type": "m.presence", "sender": BOB, "content": {"presence": "weird"}},
    ]}})
    assert update.presence_changed == {ALICE, BOB}
    assert model.presence[ALICE].presence == "online" and model.presence[ALICE].currently_active
    assert model.presence[BOB].presence == "offline"  # unknown states count as offline
    room = model.rooms[GENERAL]
    online = member_row(room, room.members[ALICE], model.presence[ALICE])
    assert online.plain == "● Alice" and online.style == "green"
    invited = member_row(room, room.members[BOB], None)
    assert invited.plain.startswith("○ Bob")


def test_member_colours_are_stable() -> None:
    model = loaded()
    room = model.rooms[GENERAL]
    first = member_row(room, room.members[ALICE], None)
    again = member_row(room, room.members[ALICE], None)
    assert first.spans == again.spans and first.spans[0].style == sender_colour(ALICE)
    assert member_row(room, room.members[BOB], None).spans[0].style == sender_colour(BOB) != sender_colour(ALICE)


# -- context (search hits) ----------------------------------------------------------------------

def test_context_island_goes_before_the_gap_with_its_own_gap_above() -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={GENERAL: joined([ev("$new", ALICE, "latest", ts=T0)], limited=True,
                                                       prev_batch="live-token")}))
    hit_id = model.apply_context(GENERAL, {
        "event": ev("$hit", BOB, "the needle", ts=T0 - 50_000),
        "events_before": [ev("$b2", ALICE, "before 2", ts=T0 - 60_000), ev("$b1", ALICE, "before 1", ts=T0 - 70_000)],
        "events_after": [ev("$a1", ALICE, "after 1", ts=T0 - 40_000)],
        "start": "ctx-start", "end": "ctx-end", "state": [member(BOB, "Bob")],
    })
    room = model.rooms[GENERAL]
    assert hit_id == "$hit"
    shape = [e.token if isinstance(e, Gap) else e.event_id for e in room.timeline]
    assert shape == ["ctx-start", "$b1", "$b2", "$hit", "$a1", "live-token", "$new"]
    assert room.member_name(BOB) == "Bob"
    # Loading the same context again changes nothing.
    model.apply_context(GENERAL, {"event": ev("$hit", BOB, "the needle", ts=T0 - 50_000)})
    assert [e.token if isinstance(e, Gap) else e.event_id for e in room.timeline] == shape


def test_back_pagination_after_an_island_does_not_duplicate_it() -> None:
    model = ClientState(ME)
    model.apply_sync(sync("s1", join={GENERAL: joined([ev("$new", ALICE, "latest", ts=T0)], limited=True,
                                                       prev_batch="live-token")}))
    model.apply_context(GENERAL, {"event": ev("$hit", BOB, "needle", ts=T0 - 50_000), "start": "ctx-start"})
    room = model.rooms[GENERAL]
    live_gap = room.timeline[2]
    assert isinstance(live_gap, Gap) and live_gap.token == "live-token"
    model.apply_messages(GENERAL, live_gap, {"chunk": [ev("$mid", ALICE, "middle", ts=T0 - 10_000),
                                                       ev("$hit", BOB, "needle", ts=T0 - 50_000)]})
    ids = [e.event_id for e in room.events()]
    assert ids.count("$hit") == 1 and ids.index("$mid") > ids.index("$hit")


# -- read position ------------------------------------------------------------------------------

def test_new_messages_line_goes_before_the_first_unread_from_someone_else() -> None:
    model = loaded()
    room = model.rooms[GENERAL]
    rows = timeline_lines(room, ME, None, unread_after="$g1")
    ids = [row[0] for row in rows]
    assert ids.index(NEW_MESSAGES_ID) == ids.index("$g2") - 1
    assert room.first_unread(ME, "$g1") is room.event("$g2")
    # Read up to the end (our own message last): no line.
    assert NEW_MESSAGES_ID not in [row[0] for row in timeline_lines(room, ME, None, unread_after="$g2")]
    assert room.first_unread(ME, "$g2") is None
    # A marker that is not loaded gives no line (and no guess).
    assert room.first_unread(ME, "$unknown") is None


def test_fully_read_comes_from_room_account_data_and_moves_when_read() -> None:
    model = loaded()
    data = joined([])
    data["account_data"]["events"] = [{"type": "m.fully_read", "content": {"event_id": "$g1"}}]
    model.apply_sync(sync("s2", join={GENERAL: data}))
    assert model.rooms[GENERAL].fully_read == "$g1"
    model.mark_read_locally(GENERAL)
    assert model.rooms[GENERAL].fully_read == "$g3"


# -- media ----------------------------------------------------------------------------------------

def test_media_cache_drops_least_recently_used_beyond_its_budget() -> None:
    cache = MediaCache(max_bytes=10)
    cache.put("mxc://a/1", "inline", b"12345")
    cache.put("mxc://a/2", "inline", b"12345")
    assert cache.get("mxc://a/1", "inline") == b"12345"  # now most recent
    cache.put("mxc://a/3", "inline", b"123")
    assert cache.get("mxc://a/2", "inline") is None and cache.get("mxc://a/1", "inline") is not None
    cache.put("mxc://a/big", "full", b"x" * 11)
    assert cache.get("mxc://a/big", "full") is None and cache.size <= 10


def test_small_images_inline_from_the_original_big_or_unknown_from_a_thumbnail() -> None:
    assert not wants_thumbnail({"info": {"size": 2000}})
    assert wants_thumbnail({"info": {"size": 5_000_000}})
    assert wants_thumbnail({})


def test_saved_files_get_safe_unique_names(tmp_path: Path) -> None:
    assert safe_filename("../../etc/passwd") == "_.._etc_passwd"
    assert safe_filename(".hidden\x1b[2J") == "hidden[2J"
    assert safe_filename("") == "download"
    first = save_media(tmp_path / "dl", "notes.pdf", b"one")
    second = save_media(tmp_path / "dl", "notes.pdf", b"two")
    assert first.name == "notes.pdf" and second.name == "notes (1).pdf"
    assert second.read_bytes() == b"two" and unique_path(tmp_path / "dl", "notes.pdf").name == "notes (2).pdf"


def test_downloads_go_to_the_downloads_folder_when_there_is_one(tmp_path: Path) -> None:
    assert downloads_dir(tmp_path).name == "downloads"  # none: the config dir's
    (tmp_path / "Downloads").mkdir()
    assert downloads_dir(tmp_path) == tmp_path / "Downloads"


# -- notifications and people ---------------------------------------------------------------------

def test_notifications_are_for_mentions_and_dms_out_of_view() -> None:
    mention = Notification(GENERAL, "$x", highlight=True, is_direct=False)
    direct = Notification(DM, "$y", highlight=False, is_direct=True)
    chatter = Notification(GENERAL, "$z", highlight=False, is_direct=False)
    assert should_notify(mention, room_in_view=False) and should_notify(direct, room_in_view=False)
    assert not should_notify(chatter, room_in_view=False) and not should_notify(mention, room_in_view=True)


def test_notification_text_names_sender_and_room_and_cleans_the_body() -> None:
    model = loaded()
    group = model.rooms[GENERAL]
    event = TimelineEvent("$e", ALICE, "m.room.message", T0, {"msgtype": "m.text", "body": "hi \x1b[31mme\n!"})
    assert notification_text(group, event, ME) == ("Alice in General", "hi [31mme !")
    dm_event = TimelineEvent("$d", ALICE, "m.room.message", T0, {"msgtype": "m.image", "body": "cat.png"})
    assert notification_text(model.rooms[DM], dm_event, ME) == ("Alice", "sent cat.png")


def test_desktop_notifier_runs_notify_send_only_when_enabled() -> None:
    calls: list[list[str]] = []

    async def runner(argv: list[str]) -> None:
        calls.append(list(argv))

    off = DesktopNotifier(False, command="/usr/bin/notify-send", runner=runner)
    missing = DesktopNotifier(True, command="", runner=runner)
    on = DesktopNotifier(True, command="/usr/bin/notify-send", runner=runner)
    assert not asyncio.run(off.notify("t", "b")) and not asyncio.run(missing.notify("t", "b"))
    assert asyncio.run(on.notify("Alice", "-rf body", urgent=True))
    assert calls == [notify_send_argv("/usr/bin/notify-send", "Alice", "-rf body", True)]
    assert calls[0][-3:] == ["--", "Alice", "-rf body"]


def test_settings_load_defaults_and_values(tmp_path: Path) -> None:
    assert Settings.load(tmp_path / "missing.json") == Settings()
    path = tmp_path / "settings.json"
    path.write_text('{"desktop_notifications": true, "downloads_dir": "~/x"}')
    assert Settings.load(path) == Settings(True, "~/x")
    path.write_text("[1]")
    assert Settings.load(path) == Settings()


def test_invitees_are_user_ids_and_the_rest_is_reported() -> None:
    assert parse_invitees("@a:x, @b:y @a:x") == (["@a:x", "@b:y"], [])
    assert parse_invitees("bob @c:z") == (["@c:z"], ["bob"])
