"""The TUI against a real homeserver: two clients (the TUI driven by Pilot, and a script) talk."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from PIL import Image
from textual.pilot import Pilot

from tests.conftest import auth_header, register
from tui_client.app import ParleyApp
from tui_client.matrix import HttpxTransport, MatrixClient, Session
from tui_client.screens import MainScreen
from tui_client.widgets import Composer

V3 = "/_matrix/client/v3"


@pytest_asyncio.fixture
async def server(server_factory: Any) -> Any:
    """The homeserver without protocol pings: hypercorn 0.18 keeps a closed WebSocket's ping
    task sleeping for up to one ping interval, which holds the server's shutdown that long.
    (The client still pings; keep-alive is not what these tests are about.)"""
    return await server_factory({"rate_limits.enabled": False, "http.websocket_ping_interval_s": 0})


async def wait_for(pilot: Pilot, check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = check()
        if value:
            return value
        await pilot.pause(0.05)
    app = pilot.app
    raise AssertionError(f"timed out waiting for {what}: batch={app.model.next_batch} status={app.client.status}")


async def script_sync(client: httpx.AsyncClient, h: dict[str, str], since: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout": 5000}
    if since:
        params["since"] = since
    r = await client.get(f"{V3}/sync", headers=h, params=params)
    assert r.status_code == 200
    return r.json()


def bodies(app: ParleyApp, room_id: str) -> list[str]:
    room = app.model.rooms.get(room_id)
    if room is None:
        return []
    out = []
    for entry in room.timeline:
        content = getattr(entry, "content", None)
        if isinstance(content, dict) and isinstance(content.get("body"), str):
            out.append(content["body"])
    return out


async def test_tui_and_script_exchange_messages(server: Any, tmp_path: Path) -> None:
    async with server.client() as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        hb = auth_header(bob["access_token"])
        room = (await http.post(f"{V3}/createRoom", headers=hb, json={"name": "Live", "invite": [alice["user_id"]]})).json()["room_id"]
        assert (await http.post(f"{V3}/join/{room}", headers=auth_header(alice["access_token"]), json={})).status_code == 200
        bob_since = (await script_sync(http, hb, None))["next_batch"]

        session = Session(homeserver=server.base_url, user_id=alice["user_id"],
                          access_token=alice["access_token"], device_id=alice["device_id"])
        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, session)
        app = ParleyApp(client, tz=UTC, transport_factory=HttpxTransport)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: room in app.model.rooms, "the room in the TUI")
            screen = app.screen
            assert isinstance(screen, MainScreen)
            screen.open_room(room)
            await pilot.pause()

            # The TUI sends; the script receives.
            composer = screen.query_one(Composer)
            composer.focus()
            composer.text = "hello from the terminal"
            await pilot.press("enter")
            got: dict[str, Any] = {}
            for _ in range(10):
                body = await script_sync(http, hb, bob_since)
                bob_since = body["next_batch"]
                events = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
                hits = [e for e in events if e.get("content", {}).get("body") == "hello from the terminal"]
                if hits:
                    got = hits[0]
                    break
            assert got and got["sender"] == alice["user_id"]

            # The script replies and edits; the TUI shows the reply and the edited text.
            r = await http.put(f"{V3}/rooms/{room}/send/m.room.message/{random.getrandbits(32)}", headers=hb, json={
                "msgtype": "m.text", "body": "a reply",
                "m.relates_to": {"m.in_reply_to": {"event_id": got["event_id"]}}})
            reply_id = r.json()["event_id"]
            await wait_for(pilot, lambda: "a reply" in bodies(app, room), "the reply in the TUI")
            await http.put(f"{V3}/rooms/{room}/send/m.room.message/{random.getrandbits(32)}", headers=hb, json={
                "msgtype": "m.text", "body": "* a better reply",
                "m.new_content": {"msgtype": "m.text", "body": "a better reply"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": reply_id}})
            await wait_for(pilot, lambda: "a better reply" in bodies(app, room), "the edit in the TUI")

            # Typing from the script shows in the TUI.
            await http.put(f"{V3}/rooms/{room}/typing/{bob['user_id']}", headers=hb, json={"typing": True, "timeout": 10000})
            await wait_for(pilot, lambda: bob["user_id"] in app.model.rooms[room].typing, "bob typing")

            # An image uploaded from the TUI arrives on the other side with its bytes.
            buf = io.BytesIO()
            Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, "PNG")
            picture = tmp_path / "red.png"
            picture.write_bytes(buf.getvalue())
            composer.text = f"/upload {picture}"
            await pilot.press("enter")
            image: dict[str, Any] = {}
            for _ in range(20):
                body = await script_sync(http, hb, bob_since)
                bob_since = body["next_batch"]
                events = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
                found = [e for e in events if e.get("content", {}).get("msgtype") == "m.image"]
                if found:
                    image = found[0]
                    break
            assert image, "the image never arrived"
            mxc = image["content"]["url"]
            assert mxc.startswith("mxc://")
            server_name, media_id = mxc[len("mxc://"):].split("/", 1)
            r = await http.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}", headers=hb)
            assert r.status_code == 200 and r.content == buf.getvalue()


async def _start_tui(server: Any, who: dict[str, Any]) -> ParleyApp:
    session = Session(homeserver=server.base_url, user_id=who["user_id"],
                      access_token=who["access_token"], device_id=who["device_id"])
    client = MatrixClient(HttpxTransport(server.base_url), server.base_url, session)
    return ParleyApp(client, tz=UTC, transport_factory=HttpxTransport)


async def test_tui_member_list_user_search_and_direct_chat(server: Any) -> None:
    from tui_client.screens import UserSearchScreen
    from tui_client.widgets import MemberList

    async with server.client() as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        carol = await register(http, "carol")
        hb = auth_header(bob["access_token"])
        await http.put(f"{V3}/profile/{bob['user_id']}/displayname", headers=hb, json={"displayname": "Bobby"})
        room = (await http.post(f"{V3}/createRoom", headers=hb, json={
            "name": "Crowd", "invite": [alice["user_id"], carol["user_id"]]})).json()["room_id"]
        assert (await http.post(f"{V3}/join/{room}", headers=auth_header(alice["access_token"]), json={})).status_code == 200

        app = await _start_tui(server, alice)
        async with app.run_test(size=(110, 30)) as pilot:
            await wait_for(pilot, lambda: room in app.model.rooms, "the room in the TUI")
            screen = app.screen
            assert isinstance(screen, MainScreen)
            screen.open_room(room)
            await pilot.pause()

            # F2: the member list comes from /members, invited members included.
            await pilot.press("f2")
            await wait_for(pilot, lambda: app.model.rooms[room].members_loaded, "/members loaded")
            await pilot.pause()
            members = screen.query_one(MemberList)
            assert members.user_ids() == [alice["user_id"], bob["user_id"], carol["user_id"]]  # joined by name, then invited
            assert "Bobby" in str(members.get_option(bob["user_id"]).prompt)

            # Ctrl+O: the user directory finds bob; Enter creates a DM and records it in m.direct.
            await pilot.press("ctrl+o")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, UserSearchScreen)
            await pilot.press(*"bobby")
            await wait_for(pilot, lambda: dialog.results, "user directory results")
            assert dialog.results == [bob["user_id"]]
            await pilot.press("enter")
            dm = await wait_for(pilot, lambda: app.model.direct_room_with(bob["user_id"]), "the DM in m.direct")
            await wait_for(pilot, lambda: screen.room_id == dm, "the DM opened")
            assert app.model.rooms[dm].is_direct

        # Bob has a direct-chat invite from alice.
        invite: dict[str, Any] = {}
        for _ in range(10):
            body = await script_sync(http, hb, None)
            invite = body.get("rooms", {}).get("invite", {}).get(dm, {})
            if invite:
                break
        events = invite.get("invite_state", {}).get("events", [])
        mine = next(e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob["user_id"])
        assert mine["content"].get("is_direct") is True and mine["sender"] == alice["user_id"]


async def test_tui_shows_an_uploaded_image_inline(server: Any) -> None:
    from tui_client.widgets import Timeline

    async with server.client() as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        hb = auth_header(bob["access_token"])
        room = (await http.post(f"{V3}/createRoom", headers=hb, json={"name": "Pics", "invite": [alice["user_id"]]})).json()["room_id"]
        assert (await http.post(f"{V3}/join/{room}", headers=auth_header(alice["access_token"]), json={})).status_code == 200
        buf = io.BytesIO()
        Image.new("RGB", (48, 32), (20, 90, 200)).save(buf, "PNG")
        upload = await http.post("/_matrix/media/v3/upload", headers={**hb, "Content-Type": "image/png"},
                                 params={"filename": "blue.png"}, content=buf.getvalue())
        assert upload.status_code == 200, upload.text
        sent = await http.put(f"{V3}/rooms/{room}/send/m.room.message/{random.getrandbits(32)}", headers=hb, json={
            "msgtype": "m.image", "body": "blue.png", "url": upload.json()["content_uri"],
            "info": {"mimetype": "image/png", "size": len(buf.getvalue()), "w": 48, "h": 32}})
        event_id = sent.json()["event_id"]

        app = await _start_tui(server, alice)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: room in app.model.rooms, "the room in the TUI")
            screen = app.screen
            assert isinstance(screen, MainScreen)
            screen.open_room(room)
            timeline = screen.query_one(Timeline)
            inline = await wait_for(pilot, lambda: timeline.inline_images().get(event_id), "the inline picture")
            assert inline.ok and inline.data == buf.getvalue()


async def test_message_search_pages_through_every_hit(server: Any) -> None:
    async with server.client() as http:
        alice = await register(http, "alice")
        ha = auth_header(alice["access_token"])
        room = (await http.post(f"{V3}/createRoom", headers=ha, json={"name": "Haystack"})).json()["room_id"]
        sent = []
        for i in range(23):
            r = await http.put(f"{V3}/rooms/{room}/send/m.room.message/n{i}", headers=ha,
                               json={"msgtype": "m.text", "body": f"needle number {i}"})
            sent.append(r.json()["event_id"])
        session = Session(homeserver=server.base_url, user_id=alice["user_id"],
                          access_token=alice["access_token"], device_id=alice["device_id"])
        client = MatrixClient(HttpxTransport(server.base_url), server.base_url, session)
        try:
            found: list[str] = []
            pages = 0
            token = None
            while True:
                page = await client.search_messages("needle", next_batch=token)
                pages += 1
                found += [r["event_id"] for r in page.results]
                token = page.next_batch
                if token is None:
                    break
                assert pages < 10
            assert pages >= 2 and found == list(reversed(sent))  # newest first, each once
        finally:
            await client.transport.aclose()
