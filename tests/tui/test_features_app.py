"""Members, people dialogs, search, pictures, unread jumps and popups, driven with Pilot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image
from textual.widgets import Checkbox, Input

from tui_client.config import Settings
from tui_client.matrix import ApiRequest, ApiResponse
from tui_client.notify import DesktopNotifier
from tui_client.screens import (
    CreateGroupScreen,
    ImageViewerScreen,
    MainScreen,
    SearchScreen,
    UserSearchScreen,
)
from tui_client.screens.search import ResultList
from tui_client.widgets import MemberList, Timeline

from .conftest import make_app, settle
from .sync_data import ALICE, BOB, ME, T0, ev, initial_sync, joined, member, sync

GENERAL = "!general:example.org"
RANDOM = "!random:example.org"
DM = "!dm:example.org"
CAROL = "@carol:example.org"


def png(colour: tuple[int, int, int] = (30, 160, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "PNG")
    return buf.getvalue()


async def test_f2_shows_members_loaded_from_the_server_with_presence() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/members", {"chunk": [
        member(ME, "Me"), member(ALICE, "Alice"), member(BOB, "Bob"), member(CAROL, "Carol", "invite")]})
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        members = app.screen.query_one(MemberList)
        assert not members.display or not members.shown
        await pilot.press("f2")
        for _ in range(50):
            if app.model.rooms[GENERAL].members_loaded:
                break
            await pilot.pause(0.02)
        await pilot.pause()
        assert members.shown and members.user_ids() == [ALICE, BOB, ME, CAROL]
        assert any(r.path == "/_matrix/client/v3/rooms/%21general%3Aexample.org/members" for r in transport.requests)
        transport.push_sync({"next_batch": "s2", "presence": {"events": [
            {"type": "m.presence", "sender": ALICE, "content": {"presence": "online"}}]}})
        await settle(pilot, "s2")
        assert str(members.get_option(ALICE).prompt).startswith("● Alice")
        await pilot.press("f2")
        assert not members.shown


async def test_user_search_starts_a_direct_chat_and_records_it_in_m_direct() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/client/v3/user_directory/search", lambda request: {
        "limited": False, "results": [{"user_id": CAROL, "display_name": "Carol"}]
        if "car" in request.json["search_term"] else []})
    transport.route("POST", r"/_matrix/client/v3/createRoom", {"room_id": "!new:example.org"})
    transport.route("GET", r"/_matrix/client/v3/user/[^/]+/account_data/m.direct", {ALICE: [DM]})
    transport.route("PUT", r"/_matrix/client/v3/user/[^/]+/account_data/m.direct", {})
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, UserSearchScreen)
        dialog.debounce = 0
        await pilot.press(*"car")
        for _ in range(50):
            if dialog.results:
                break
            await pilot.pause(0.02)
        assert dialog.results == [CAROL]
        await pilot.press("enter")
        for _ in range(50):
            if any(r.method == "PUT" and "m.direct" in r.path for r in transport.requests):
                break
            await pilot.pause(0.02)
        create = next(r for r in transport.requests if r.path.endswith("/createRoom"))
        assert create.json["is_direct"] is True and create.json["invite"] == [CAROL]
        put = next(r for r in transport.requests if r.method == "PUT" and "m.direct" in r.path)
        assert put.json == {ALICE: [DM], CAROL: ["!new:example.org"]}
        # The new room opens when the sync brings it.
        transport.push_sync(sync("s2", join={"!new:example.org": joined([member(ME, "Me")])}))
        await settle(pilot, "s2")
        assert isinstance(app.screen, MainScreen) and app.screen.room_id == "!new:example.org"


async def test_user_search_opens_an_existing_dm_instead_of_creating_one() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/client/v3/user_directory/search",
                    {"results": [{"user_id": ALICE, "display_name": "Alice"}]})
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.debounce = 0  # type: ignore[attr-defined]
        await pilot.press(*"ali")
        for _ in range(50):
            if app.screen.results:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.02)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.room_id == DM  # type: ignore[attr-defined]
        assert not any(r.path.endswith("/createRoom") for r in transport.requests)


async def test_create_group_dialog_sends_name_topic_invitees_and_visibility() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/client/v3/createRoom", {"room_id": "!team:example.org"})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, CreateGroupScreen)
        dialog.query_one("#group-invite", Input).value = "bob"
        dialog.query_one("#group-name", Input).value = "Team"
        await pilot.click("#group-create")
        await pilot.pause()
        assert "Not a user id: bob" in str(dialog.query_one("#group-error").render())
        dialog.query_one("#group-topic", Input).value = "Planning"
        dialog.query_one("#group-invite", Input).value = f"{BOB}, {CAROL}"
        dialog.query_one("#group-public", Checkbox).value = True
        dialog.query_one("#group-name", Input).focus()
        await pilot.press("enter")  # Enter in a field creates too
        for _ in range(50):
            if any(r.path.endswith("/createRoom") for r in transport.requests):
                break
            await pilot.pause(0.02)
        body = next(r for r in transport.requests if r.path.endswith("/createRoom")).json
        assert body["name"] == "Team" and body["topic"] == "Planning" and body["invite"] == [BOB, CAROL]
        assert body["preset"] == "public_chat" and body["visibility"] == "public" and body["is_direct"] is False


async def test_search_lists_hits_across_rooms_and_jumps_into_loaded_context() -> None:
    app, transport = make_app([initial_sync()])
    hit = ev("$old", BOB, "the release plan", ts=T0 - 3_600_000, room_id=RANDOM)
    transport.route("POST", r"/_matrix/client/v3/search", {"search_categories": {"room_events": {"results": [
        {"rank": 1.0, "result": hit},
        {"rank": 0.5, "result": ev("$g2", BOB, "release notes", ts=T0 + 60_000, room_id=GENERAL)}]}}})
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/context/.*", {
        "event": hit, "events_before": [ev("$older", ALICE, "what is the plan?", ts=T0 - 3_700_000)],
        "events_after": [], "start": "ctx-start", "end": "ctx-end", "state": [member(BOB, "Bob")]})
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"release", "enter")
        for _ in range(50):
            if app.screen.hits:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.02)
        search = next(r for r in transport.requests if r.path.endswith("/search")).json
        assert "filter" not in search["search_categories"]["room_events"]  # every room
        texts = [h.text.plain for h in app.screen.hits]  # type: ignore[attr-defined]
        assert texts[0].startswith("#random:example.org · ") and "the release plan" in texts[0]
        await pilot.press("enter")  # the first hit, in a room where it is not loaded
        for _ in range(50):
            if isinstance(app.screen, MainScreen) and app.model.rooms[RANDOM].event("$old"):
                break
            await pilot.pause(0.02)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MainScreen) and screen.room_id == RANDOM
        context = next(r for r in transport.requests if "/context/" in r.path)
        assert context.path.endswith("/context/%24old")
        timeline = screen.query_one(Timeline)
        assert timeline.selected_id() == "$old" and timeline.has_focus


async def test_search_results_load_page_after_page_as_the_end_comes_into_view() -> None:
    app, transport = make_app([initial_sync()])

    def page(request: ApiRequest) -> dict[str, Any]:
        start = {None: 0, "page2": 30, "page3": 60}[request.params.get("next_batch")]
        size = 30 if start < 60 else 5
        hits = [{"rank": 1.0, "result": ev(f"$h{i}", BOB, f"needle number {i}", ts=T0 - i * 1000, room_id=GENERAL)}
                for i in range(start, start + size)]
        events: dict[str, Any] = {"results": hits, "count": 65}
        if start < 60:
            events["next_batch"] = "page2" if start == 0 else "page3"
        return {"search_categories": {"room_events": events}}

    transport.route("POST", r"/_matrix/client/v3/search", page)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+f")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        await pilot.press(*"needle", "enter")
        await wait_for(pilot, lambda: len(screen.hits) == 30, "the first page")
        results = screen.query_one(ResultList)
        assert results.get_option_at_index(results.option_count - 1).id == "more"
        assert "30 of 65 found" in str(screen.query_one("#search-status").render())
        assert len(searches(transport)) == 1  # the end is not in view yet: nothing more asked

        await pilot.press("end")  # to the "more results" row: the next page comes
        await wait_for(pilot, lambda: len(screen.hits) == 60, "the second page")
        assert searches(transport)[1].params == {"next_batch": "page2"}
        assert searches(transport)[1].json == searches(transport)[0].json  # the same search, continued
        assert results.highlighted == 30  # the cursor stays where the row was: on the first new hit

        results.scroll_end(animate=False, immediate=True)  # scrolling to the bottom also loads
        await wait_for(pilot, lambda: len(screen.hits) == 65, "the last page")
        await pilot.pause()
        assert searches(transport)[2].params == {"next_batch": "page3"}
        assert results.option_count == 65 and "more" not in str(screen.query_one("#search-status").render())
        assert [hit.event_id for hit in screen.hits] == [f"$h{i}" for i in range(65)]
        await pilot.press("end", "enter")  # the last hit opens where it is
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        assert len(searches(transport)) == 3


def searches(transport: Any) -> list[ApiRequest]:
    return [r for r in transport.requests if r.path == "/_matrix/client/v3/search"]


async def wait_for(pilot: Any, check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_images_are_drawn_inline_and_open_full_size(tmp_path: Path) -> None:
    picture = png()
    image_event = ev("$pic", BOB, ts=T0 + 200_000, content={
        "msgtype": "m.image", "body": "green.png", "url": "mxc://example.org/green",
        "info": {"mimetype": "image/png", "size": len(picture), "w": 40, "h": 30}})
    first = initial_sync()
    first["rooms"]["join"][GENERAL]["timeline"]["events"].append(image_event)
    app, transport = make_app([first])
    app.settings = Settings(downloads_dir=str(tmp_path / "dl"))
    transport.route("GET", r"/_matrix/client/v1/media/download/example\.org/green",
                    ApiResponse(200, picture, {"content-type": "image/png"}))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        timeline = app.screen.query_one(Timeline)
        for _ in range(50):
            if "$pic" in timeline.inline_images():
                break
            await pilot.pause(0.02)
        inline = timeline.inline_images()["$pic"]
        assert inline.ok and inline.data == picture
        downloads = [r.path for r in transport.requests if "/media/" in r.path]
        assert downloads == ["/_matrix/client/v1/media/download/example.org/green"]  # small: the original
        timeline.focus()
        timeline.select_event("$pic")
        await pilot.press("o")
        for _ in range(50):
            if isinstance(app.screen, ImageViewerScreen):
                break
            await pilot.pause(0.02)
        viewer = app.screen
        assert isinstance(viewer, ImageViewerScreen) and viewer.data == picture
        assert viewer.query_one("#viewer-image") is not None
        await pilot.press("s")
        await pilot.pause()
        saved = tmp_path / "dl" / "green.png"
        assert saved.read_bytes() == picture
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_big_images_use_a_thumbnail_and_undecodable_ones_a_placeholder() -> None:
    big = ev("$big", BOB, ts=T0 + 200_000, content={
        "msgtype": "m.image", "body": "huge.png", "url": "mxc://example.org/huge",
        "info": {"mimetype": "image/png", "size": 9_000_000}})
    broken = ev("$bad", BOB, ts=T0 + 201_000, content={
        "msgtype": "m.image", "body": "bad.png", "url": "mxc://example.org/bad", "info": {"size": 10}})
    first = initial_sync()
    first["rooms"]["join"][GENERAL]["timeline"]["events"] += [big, broken]
    app, transport = make_app([first])
    transport.route("GET", r"/_matrix/client/v1/media/thumbnail/example\.org/huge",
                    ApiResponse(200, png((0, 0, 200)), {"content-type": "image/png"}))
    transport.route("GET", r"/_matrix/client/v1/media/download/example\.org/bad",
                    ApiResponse(200, b"not a picture", {"content-type": "image/png"}))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        timeline = app.screen.query_one(Timeline)
        for _ in range(50):
            if {"$big", "$bad"} <= set(timeline.inline_images()):
                break
            await pilot.pause(0.02)
        images = timeline.inline_images()
        assert images["$big"].ok and not images["$bad"].ok
        thumb = next(r for r in transport.requests if "/thumbnail/" in r.path)
        assert thumb.params == {"width": "320", "height": "240", "method": "scale"}
        assert not any("/download/example.org/huge" in r.path for r in transport.requests)


async def test_files_are_saved_with_a_visible_result(tmp_path: Path) -> None:
    file_event = ev("$file", BOB, ts=T0 + 200_000, content={
        "msgtype": "m.file", "body": "notes.pdf", "url": "mxc://example.org/notes", "info": {"size": 3}})
    first = initial_sync()
    first["rooms"]["join"][GENERAL]["timeline"]["events"].append(file_event)
    app, transport = make_app([first])
    app.settings = Settings(downloads_dir=str(tmp_path))
    transport.route("GET", r"/_matrix/client/v1/media/download/example\.org/notes", ApiResponse(200, b"pdf"))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        timeline.select_event("$file")
        await pilot.press("s")
        for _ in range(50):
            if (tmp_path / "notes.pdf").exists():
                break
            await pilot.pause(0.02)
        assert (tmp_path / "notes.pdf").read_bytes() == b"pdf"
        assert any(f"Saved to {tmp_path / 'notes.pdf'}" in str(n.message) for n in app._notifications)


async def test_new_messages_line_and_jump_to_first_unread() -> None:
    first = initial_sync()
    first["rooms"]["join"][GENERAL]["account_data"]["events"] = [
        {"type": "m.fully_read", "content": {"event_id": "$g1"}}]
    app, transport = make_app([first])
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, MainScreen) and screen.room_id == GENERAL
        timeline = screen.query_one(Timeline)
        ids = [timeline.get_option_at_index(i).id for i in range(timeline.option_count)]
        assert ids.index("new-messages") == ids.index("$g2") - 1
        # Opening marked it read on the server, but the line stays for this visit.
        markers = [r for r in transport.requests if r.path.endswith("/read_markers")]
        assert markers and markers[-1].json["m.fully_read"] == "$g3"
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert timeline.selected_id() == "$g2" and timeline.has_focus


async def test_desktop_popup_for_a_dm_out_of_view_only_when_enabled() -> None:
    calls: list[list[str]] = []

    async def runner(argv: list[str]) -> None:
        calls.append(list(argv))

    app, transport = make_app([initial_sync()])
    app.notifier = DesktopNotifier(True, command="notify-send", runner=runner)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        assert app.screen.room_id == GENERAL  # type: ignore[attr-defined]
        transport.push_sync(sync("s2", join={
            DM: joined([ev("$d2", ALICE, "are you there?", ts=T0 + 400_000)]),
            RANDOM: joined([ev("$r2", ALICE, "lunch?", ts=T0 + 400_000)])}))
        await settle(pilot, "s2")
        for _ in range(50):
            if calls:
                break
            await pilot.pause(0.02)
        assert calls == [["notify-send", "--app-name=Parley", "--urgency=normal", "--", "Alice", "are you there?"]]
