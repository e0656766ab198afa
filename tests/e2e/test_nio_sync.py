"""matrix-nio's own sync loop (sync_forever with callbacks) against our server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nio

from tests.conftest import register


async def test_nio_sync_forever_receives_messages_typing_and_receipts(server: Any, tmp_path: Path) -> None:
    async with server.client() as c:
        a = await register(c, "alice")
        b = await register(c, "bob")
    alice = nio.AsyncClient(server.base_url, a["user_id"], device_id=a["device_id"], store_path=str(tmp_path))
    alice.restore_login(a["user_id"], a["device_id"], a["access_token"])
    bob = nio.AsyncClient(server.base_url, b["user_id"], device_id=b["device_id"], store_path=str(tmp_path))
    bob.restore_login(b["user_id"], b["device_id"], b["access_token"])
    got: list[str] = []
    typing_seen = asyncio.Event()
    invited = asyncio.Event()
    receipts: list[str] = []

    async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        got.append(event.body)

    async def on_invite(room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        if event.state_key == bob.user_id:
            invited.set()

    async def on_typing(room: nio.MatrixRoom, event: nio.TypingNoticeEvent) -> None:
        if alice.user_id in event.users:
            typing_seen.set()

    async def on_receipt(room: nio.MatrixRoom, event: nio.ReceiptEvent) -> None:
        for r in event.receipts:
            receipts.append(r.user_id)

    bob.add_event_callback(on_message, nio.RoomMessageText)
    bob.add_event_callback(on_invite, nio.InviteMemberEvent)
    bob.add_ephemeral_callback(on_typing, nio.TypingNoticeEvent)
    alice.add_ephemeral_callback(on_receipt, nio.ReceiptEvent)
    loops = [asyncio.create_task(bob.sync_forever(timeout=5000)), asyncio.create_task(alice.sync_forever(timeout=5000))]
    try:
        created = await alice.room_create(name="nio room", invite=[bob.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await asyncio.wait_for(invited.wait(), 15)
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        for i in range(3):
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"msg {i}"})
            assert isinstance(sent, nio.RoomSendResponse), sent
        await alice.room_typing(room_id, True, timeout=10000)
        await asyncio.wait_for(typing_seen.wait(), 15)
        for _ in range(150):
            if got == ["msg 0", "msg 1", "msg 2"]:
                break
            await asyncio.sleep(0.1)
        assert got == ["msg 0", "msg 1", "msg 2"]
        last = sent.event_id
        r = await bob.room_read_markers(room_id, last, last)
        assert isinstance(r, nio.RoomReadMarkersResponse), r
        for _ in range(150):
            if bob.user_id in receipts:
                break
            await asyncio.sleep(0.1)
        assert bob.user_id in receipts
        assert bob.rooms[room_id].display_name == "nio room"
    finally:
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await alice.close()
        await bob.close()
