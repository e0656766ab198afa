"""Pictures of the screens at 80x24 (pytest-textual-snapshot; update with --snapshot-update).

Deterministic: recorded sync data with fixed timestamps, UTC, a fixed clock, no cursor blink.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from .conftest import make_app, settle
from .sync_data import ALICE, BOB, ME, T0, ev, initial_sync, joined, member, state, sync

SHOWCASE = "!showcase:example.org"


def showcase_sync() -> dict[str, Any]:
    """One room with every kind of message the timeline draws."""
    formatted = ev("$f1", ALICE, ts=T0, content={
        "msgtype": "m.text",
        "body": "Plan: **ship it**",
        "format": "org.matrix.custom.html",
        "formatted_body": (
            "<p>Plan for <strong>Friday</strong>, <em>finally</em>:</p>"
            "<ol><li>merge <code>tui</code></li><li>tag <a href=\"https://parley.example/r\">the release</a></li></ol>"
            "<blockquote>Ship early, ship often</blockquote>"
            "<pre><code>make release\n</code></pre>"
            "<p>Evil: \x1b[2J\x1b]0;title\x07 gone</p>"
        ),
    })
    image = ev("$img", BOB, ts=T0 + 60_000, content={
        "msgtype": "m.image", "body": "screenshot.png", "url": "mxc://example.org/shot",
        "info": {"mimetype": "image/png", "size": 254_321, "w": 1280, "h": 720}})
    file = ev("$file", BOB, ts=T0 + 61_000, content={
        "msgtype": "m.file", "body": "notes.pdf", "url": "mxc://example.org/notes", "info": {"size": 2048}})
    reply = ev("$rep", ME, ts=T0 + 120_000, content={
        "msgtype": "m.text", "body": "> <@alice:example.org> Plan: **ship it**\n\nSounds good",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$f1"}}})
    edited = ev("$ed", BOB, "Meeting at 3", ts=T0 + 180_000)
    edit = ev("$ed2", BOB, ts=T0 + 181_000, content={
        "msgtype": "m.text", "body": "* Meeting at 4", "m.new_content": {"msgtype": "m.text", "body": "Meeting at 4"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$ed"}})
    deleted = ev("$del", ALICE, "oops", ts=T0 + 200_000)
    redaction = ev("$x", ALICE, type="m.room.redaction", content={"redacts": "$del"}, ts=T0 + 201_000)
    reactions = [
        ev(f"$re{i}", sender, type="m.reaction", ts=T0 + 210_000 + i,
           content={"m.relates_to": {"rel_type": "m.annotation", "event_id": "$ed", "key": key}})
        for i, (sender, key) in enumerate([(ALICE, "👍"), (ME, "👍"), (ALICE, "🎉")])
    ]
    next_day = ev("$nd", ALICE, "Morning!", ts=T0 + 86_400_000)
    room = joined(
        [member(ME, "Me", ts=T0 - 10), member(ALICE, "Alice", ts=T0 - 10), member(BOB, "Bob", ts=T0 - 10),
         formatted, image, file, reply, edited, edit, deleted, redaction, *reactions, next_day],
        state_events=[state("m.room.name", {"name": "Showcase"}), state("m.room.topic", {"topic": "Every message kind"})],
        ephemeral=[{"type": "m.typing", "content": {"user_ids": [BOB]}},
                   {"type": "m.receipt", "content": {"$nd": {"m.read": {BOB: {"ts": 1}}}}}],
    )
    return sync("s1", join={SHOWCASE: room})


async def _ready(pilot: Pilot) -> None:
    await settle(pilot)


def test_main_screen(snap_compare) -> None:
    app, _ = make_app([initial_sync()])
    assert snap_compare(app, terminal_size=(80, 24), run_before=_ready)


def test_formatted_message(snap_compare) -> None:
    app, _ = make_app([showcase_sync()])

    async def scroll_to_formatted(pilot: Pilot) -> None:
        await settle(pilot)
        timeline = pilot.app.screen.query_one("Timeline")
        timeline.scroll_home(animate=False, immediate=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=scroll_to_formatted)


def test_image_message(snap_compare) -> None:
    app, _ = make_app([showcase_sync()])
    assert snap_compare(app, terminal_size=(80, 24), run_before=_ready)


def test_help_screen(snap_compare) -> None:
    app, _ = make_app([initial_sync()])

    async def open_help(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


def test_login_screen(snap_compare) -> None:
    app, _ = make_app(session=None)

    async def blink_off(pilot: Pilot) -> None:
        for widget in pilot.app.screen.query("Input"):
            widget.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=blink_off)


def test_member_list_and_inline_image(snap_compare) -> None:
    import io

    from PIL import Image

    from tui_client.matrix import ApiResponse

    buf = io.BytesIO()
    Image.new("RGB", (32, 18), (40, 120, 220)).save(buf, "PNG")
    sync_with_picture = showcase_sync()
    shot = next(e for e in sync_with_picture["rooms"]["join"][SHOWCASE]["timeline"]["events"] if e["event_id"] == "$img")
    shot["content"]["info"]["size"] = len(buf.getvalue())
    app, transport = make_app([sync_with_picture])
    transport.route("GET", r"/_matrix/client/v1/media/download/example\.org/shot",
                    ApiResponse(200, buf.getvalue(), {"content-type": "image/png"}))
    transport.route("GET", r"/_matrix/client/v3/rooms/[^/]+/members", {"chunk": [
        member(ME, "Me"), member(ALICE, "Alice"), member(BOB, "Bob"), member("@carol:example.org", "Carol", "invite")]})

    async def members_and_picture(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("f2")
        timeline = pilot.app.screen.query_one("Timeline")
        for _ in range(100):
            if "$img" in timeline.inline_images() and pilot.app.model.rooms[SHOWCASE].members_loaded:
                break
            await pilot.pause(0.02)
        await pilot.pause()
        timeline.select_event("$img")
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=members_and_picture)
