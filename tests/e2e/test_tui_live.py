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
from PIL import Image
from textual.pilot import Pilot

from tests.conftest import auth_header, register
from tui_client.app import ParleyApp
from tui_client.matrix import HttpxTransport, MatrixClient, Session
from tui_client.screens import MainScreen
from tui_client.widgets import Composer

V3 = "/_matrix/client/v3"


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
