"""The screens, driven with Pilot; the client layer runs for real on recorded sync data."""

from __future__ import annotations

import json

from textual.widgets import Input

from tui_client.model import SendStatus
from tui_client.screens import HelpScreen, LoginScreen, MainScreen, QuickSwitcher, fuzzy_score
from tui_client.widgets import Composer, RoomList, StatusBar, Timeline

from .conftest import make_app, settle
from .recorded import SESSION
from .sync_data import ALICE, ME, T0, ev, initial_sync, joined, sync

GENERAL = "!general:example.org"
DM = "!dm:example.org"


def screen_text(app) -> str:
    return app.export_screenshot()


async def test_login_screen_renders_and_logs_in() -> None:
    app, transport = make_app([initial_sync()], session=None)
    transport.route("POST", r"/_matrix/client/v3/login",
                    {"user_id": ME, "access_token": "t", "device_id": "D", "refresh_token": "r"})
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#homeserver", Input).value == "http://hs.test"
        app.screen.query_one("#user", Input).value = "me"
        app.screen.query_one("#password", Input).value = "secret"
        await pilot.click("#login")
        await settle(pilot, "s1")
        assert isinstance(app.screen, MainScreen)
        login = next(r for r in transport.requests if r.path.endswith("/login"))
        assert login.json["identifier"] == {"type": "m.id.user", "user": "me"}
        assert app.client.session is not None and app.client.session.access_token == "t"


async def test_login_error_is_shown() -> None:
    app, transport = make_app(session=None)
    async with app.run_test(size=(80, 24)) as pilot:
        from .recorded import error
        transport.route("POST", r"/_matrix/client/v3/login", error(403, "M_FORBIDDEN", error="Invalid password"))
        app.screen.query_one("#user", Input).value = "me"
        app.screen.query_one("#password", Input).value = "wrong"
        await pilot.click("#login")
        await pilot.pause(0.1)
        assert isinstance(app.screen, LoginScreen)
        assert "Invalid password" in str(app.screen.query_one("#login-error").render())


async def test_main_screen_shows_rooms_and_opens_most_active() -> None:
    app, _ = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, MainScreen) and screen.room_id == GENERAL
        assert screen.query_one(RoomList).room_ids() == ["!books:example.org", DM, GENERAL, "!random:example.org"]
        assert "General" in str(screen.query_one(StatusBar).render())


async def test_switching_rooms_with_the_room_list_and_quick_switcher() -> None:
    app, transport = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        rooms = screen.query_one(RoomList)
        rooms.focus()
        rooms.highlighted = rooms.get_option_index(DM)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.room_id == DM
        timeline = screen.query_one(Timeline)
        assert any("Hey, got a minute?" in str(timeline.get_option_at_index(i).prompt)
                   for i in range(timeline.option_count))
        # Reading the DM sends a read marker and clears its badge.
        assert any(r.path.endswith("/read_markers") and "%21dm" in r.path for r in transport.requests)
        assert app.model.rooms[DM].highlight_count == 0
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert isinstance(app.screen, QuickSwitcher)
        await pilot.press(*"rand")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and app.screen.room_id == "!random:example.org"


async def test_sending_from_the_composer_goes_through_the_client_layer() -> None:
    app, transport = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press(*"hello **world**")
        await pilot.press("enter")
        await pilot.pause(0.1)
        sent = transport.sent("send")
        assert len(sent) == 1
        assert sent[0].path.startswith("/_matrix/client/v3/rooms/%21general%3Aexample.org/send/m.room.message/")
        assert sent[0].json == {"msgtype": "m.text", "body": "hello **world**", "format": "org.matrix.custom.html",
                                "formatted_body": "hello <strong>world</strong>"}
        assert app.screen.query_one(Composer).text == ""
        echo = app.model.rooms[GENERAL].events()[-1]
        assert echo.body == "hello **world**" and echo.status is SendStatus.SENT and echo.event_id == "$sent1"
        # The server's copy arrives by sync: still one message.
        txn = sent[0].path.rsplit("/", 1)[-1]
        transport.push_sync(sync("s2", join={GENERAL: joined([
            ev("$sent1", ME, "hello **world**", ts=T0 + 400, unsigned={"transaction_id": txn})])}))
        await settle(pilot, "s2")
        assert [e.body for e in app.model.rooms[GENERAL].events()].count("hello **world**") == 1


async def test_reply_edit_and_commands_from_the_keyboard() -> None:
    app, transport = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # Up in the empty composer edits the last own message ("Thanks Bob!").
        await pilot.press("up")
        composer = app.screen.query_one(Composer)
        assert composer.text == "Thanks Bob!"
        composer.text = "Thanks, Bob!"
        await pilot.press("enter")
        await pilot.pause(0.1)
        edit = transport.sent("send")[-1].json
        assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$g3"}
        assert edit["m.new_content"]["body"] == "Thanks, Bob!"
        assert app.model.rooms[GENERAL].event("$g3").body == "Thanks, Bob!"
        # Reply: select Alice's message in the timeline, press r, type, Enter.
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        timeline.highlighted = timeline.get_option_index("$g1")
        await pilot.press("r")
        await pilot.press(*"Morning!")
        await pilot.press("enter")
        await pilot.pause(0.1)
        reply = transport.sent("send")[-1].json
        assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": "$g1"}}
        # A slash command becomes the matching API call.
        transport.route("PUT", r".*/state/m.room.topic/", {"event_id": "$t"})
        composer.text = "/topic Release day"
        await pilot.press("enter")
        await pilot.pause(0.1)
        topic = transport.requests[-1]
        assert topic.path.endswith("/state/m.room.topic/") and topic.json == {"topic": "Release day"}
        composer.text = "/me waves"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert transport.sent("send")[-1].json["msgtype"] == "m.emote"


async def test_invites_can_be_accepted() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/client/v3/join/.*", {"room_id": "!books:example.org"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.open_room("!books:example.org")
        await pilot.pause()
        assert app.screen.has_class("invite-open")
        await pilot.click("#accept")
        await pilot.pause(0.1)
        assert any(r.path == "/_matrix/client/v3/join/%21books%3Aexample.org" for r in transport.requests)


async def test_help_screen_lists_keys_and_commands() -> None:
    app, _ = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        svg = screen_text(app)
        for expected in ("Ctrl+K", "quick", "switcher", "r&#160;/&#160;e&#160;/&#160;+&#160;/&#160;d"):
            assert expected in svg
        await pilot.press("end")
        await pilot.pause()
        svg = screen_text(app)
        for expected in ("/join", "/upload&#160;&lt;path&gt;", "/search"):
            assert expected in svg
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_bell_rings_for_dm_not_in_view() -> None:
    app, transport = make_app([initial_sync()])
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        transport.push_sync(sync("s2", join={DM: joined([ev("$d2", ALICE, "ping")])}))
        await settle(pilot, "s2")
        assert rings == [1]
        transport.push_sync(sync("s3", join={GENERAL: joined([ev("$g9", ALICE, "in view, no mention")])}))
        await settle(pilot, "s3")
        assert rings == [1]


async def test_scrolling_to_the_top_gap_loads_history() -> None:
    first = sync("s1", join={GENERAL: joined([ev("$9", ALICE, "latest", ts=T0)], limited=True, prev_batch="p9")})
    app, transport = make_app([first])
    transport.route("GET", r".*/rooms/[^/]+/messages",
                    {"chunk": [ev("$8", ALICE, "older", ts=T0 - 10)], "start": "p9"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        timeline.highlighted = 0
        await pilot.pause(0.1)
        page = next(r for r in transport.requests if r.path.endswith("/messages"))
        assert page.params["from"] == "p9" and json.loads(page.params["filter"]) == {"lazy_load_members": True}
        assert [e.body for e in app.model.rooms[GENERAL].events()] == ["older", "latest"]


def test_fuzzy_score_prefers_word_starts() -> None:
    assert fuzzy_score("gen", "General") > fuzzy_score("gen", "Agent notes")
    assert fuzzy_score("xyz", "General") is None
    assert SESSION.user_id == ME


async def test_typing_notifications_follow_the_composer() -> None:
    app, transport = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press(*"hel")
        await pilot.pause(0.05)
        typing = [r for r in transport.requests if "/typing/" in r.path]
        assert len(typing) == 1 and typing[0].json == {"typing": True, "timeout": 5000}
        await pilot.press("enter")
        await pilot.pause(0.05)
        typing = [r for r in transport.requests if "/typing/" in r.path]
        assert typing[-1].json == {"typing": False}


async def test_upload_command_uploads_then_sends_an_image(tmp_path) -> None:
    from PIL import Image

    picture = tmp_path / "cat.png"
    Image.new("RGB", (4, 3)).save(picture)
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/media/v3/upload", {"content_uri": "mxc://example.org/cat"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one(Composer).text = f"/upload {picture}"
        await pilot.press("enter")
        await pilot.pause(0.1)
        upload = next(r for r in transport.requests if r.path == "/_matrix/media/v3/upload")
        assert upload.content == picture.read_bytes() and upload.content_type == "image/png"
        content = transport.sent("send")[-1].json
        assert content["msgtype"] == "m.image" and content["url"] == "mxc://example.org/cat"
        assert content["info"] == {"size": len(picture.read_bytes()), "mimetype": "image/png", "w": 4, "h": 3}


async def test_dm_command_opens_existing_dm_or_creates_one() -> None:
    app, transport = make_app([initial_sync()])
    transport.route("POST", r"/_matrix/client/v3/createRoom", {"room_id": "!newdm:x"})
    transport.route("GET", r".*/account_data/m.direct", {})
    transport.route("PUT", r".*/account_data/m.direct", {})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        composer = app.screen.query_one(Composer)
        composer.text = f"/dm {ALICE}"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.room_id == DM
        composer.text = "/dm @carol:example.org"
        await pilot.press("enter")
        await pilot.pause(0.1)
        create = next(r for r in transport.requests if r.path.endswith("/createRoom"))
        assert create.json["is_direct"] is True and create.json["invite"] == ["@carol:example.org"]
        assert next(r for r in transport.requests if r.method == "PUT" and "m.direct" in r.path).json == {
            "@carol:example.org": ["!newdm:x"]}


async def test_react_and_delete_from_the_timeline() -> None:
    app, transport = make_app([initial_sync()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        timeline.highlighted = timeline.get_option_index("$g2")
        await pilot.press("plus")
        await pilot.pause()
        await pilot.press("enter")  # accept the suggested 👍
        await pilot.pause(0.1)
        reaction = transport.sent("send")[-1]
        assert "/send/m.reaction/" in reaction.path
        assert reaction.json == {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$g2", "key": "👍"}}
        assert app.model.rooms[GENERAL].event("$g2").reactions == {"👍": {ME: "$sent1"}}
        timeline.focus()
        timeline.highlighted = timeline.get_option_index("$g3")
        await pilot.press("d")
        await pilot.pause(0.1)
        assert "/redact/%24g3/" in transport.sent("redact")[-1].path
