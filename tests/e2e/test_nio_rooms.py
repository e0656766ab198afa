"""matrix-nio as a real client: create a room, invite, join, send, read back with room_messages.

(nio's sync needs /sync, which lives elsewhere; this test stays off it.)
"""

from __future__ import annotations

from typing import Any

import nio


async def _client(server: Any, tmp_path: Any, name: str) -> nio.AsyncClient:
    # Without E2EE: nio's encrypted send path needs the room from /sync.
    config = nio.AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    c = nio.AsyncClient(server.base_url, f"@{name}:localhost", config=config)
    resp = await c.register(name, "pa55word", device_name="nio")
    assert isinstance(resp, nio.RegisterResponse), resp
    return c


async def test_nio_room_conversation(server: Any, tmp_path: Any) -> None:
    alice = await _client(server, tmp_path, "alice")
    bob = await _client(server, tmp_path, "bob")
    try:
        created = await alice.room_create(name="nio room", topic="from nio")
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        invited = await alice.room_invite(room, "@bob:localhost")
        assert isinstance(invited, nio.RoomInviteResponse), invited
        joined = await bob.join(room)
        assert isinstance(joined, nio.JoinResponse), joined
        for sender, text in ((alice, "hi bob"), (bob, "hi alice"), (alice, "bye")):
            sent = await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
            assert isinstance(sent, nio.RoomSendResponse), sent
        msgs = await bob.room_messages(room, start="", limit=10)
        assert isinstance(msgs, nio.RoomMessagesResponse), msgs
        texts = [e.body for e in msgs.chunk if isinstance(e, nio.RoomMessageText)]
        assert texts == ["bye", "hi alice", "hi bob"]
        senders = [e.sender for e in msgs.chunk if isinstance(e, nio.RoomMessageText)]
        assert senders == ["@alice:localhost", "@bob:localhost", "@alice:localhost"]
        # Pagination continues from nio's end token back to the room's creation.
        older = await bob.room_messages(room, start=msgs.end, limit=50)
        assert isinstance(older, nio.RoomMessagesResponse), older
        assert any(isinstance(e, nio.RoomCreateEvent) for e in older.chunk)
        members = await alice.joined_members(room)
        assert isinstance(members, nio.JoinedMembersResponse), members
        assert {m.user_id for m in members.members} == {"@alice:localhost", "@bob:localhost"}
    finally:
        await alice.close()
        await bob.close()
