"""Olm and Megolm between two real matrix-nio clients (with the e2e extra) through our server.

Alice and Bob upload keys, query and claim each other's, Alice sends an
encrypted message that Bob decrypts, Bob's reply decrypts on Alice's side, and
the server's stored events hold ciphertext only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import nio

# The test extra installs matrix-nio with its e2e extra: without it this must fail, not skip.
import nio.crypto

from tests.conftest import register

assert nio.crypto.ENCRYPTION_ENABLED, "matrix-nio was installed without the e2e extra"

SECRET_1 = "the eagle lands at midnight"
SECRET_2 = "copy that, the nest is ready"


async def make_client(server: Any, name: str, tmp_path: Path) -> nio.AsyncClient:
    async with server.client() as c:
        acct = await register(c, name)
    store = tmp_path / name
    store.mkdir()
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(server.base_url, acct["user_id"], store_path=str(store), config=config)
    resp = await client.login("correct horse", device_name=f"{name}-nio")
    assert isinstance(resp, nio.LoginResponse), resp
    assert client.olm is not None
    return client


async def sync_round(client: nio.AsyncClient) -> nio.SyncResponse:
    """One sync plus the housekeeping nio's sync_forever does: keys up, query, claim, to-device out."""
    resp = await client.sync(timeout=0, full_state=client.next_batch is None)
    assert isinstance(resp, nio.SyncResponse), resp
    if client.should_upload_keys:
        assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
    if client.should_query_keys:
        assert isinstance(await client.keys_query(), nio.KeysQueryResponse)
    if client.should_claim_keys:
        assert isinstance(await client.keys_claim(client.get_users_for_key_claiming()), nio.KeysClaimResponse)
    await client.send_to_device_messages()
    return resp


async def sync_until(client: nio.AsyncClient, done: Any, rounds: int = 20) -> None:
    for _ in range(rounds):
        await sync_round(client)
        if done():
            return
    raise AssertionError(f"{client.user_id}: condition not reached after {rounds} syncs")


async def test_olm_megolm_round_trip(server: Any, tmp_path: Path) -> None:
    alice = await make_client(server, "alice", tmp_path)
    bob = await make_client(server, "bob", tmp_path)
    received: dict[str, list[Any]] = {"alice": [], "bob": []}
    undecryptable: list[Any] = []

    def collector(who: str) -> Any:
        async def on_text(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
            received[who].append(event)
        return on_text

    async def on_megolm(room: nio.MatrixRoom, event: nio.MegolmEvent) -> None:
        undecryptable.append(event)

    alice.add_event_callback(collector("alice"), nio.RoomMessageText)
    bob.add_event_callback(collector("bob"), nio.RoomMessageText)
    alice.add_event_callback(on_megolm, nio.MegolmEvent)
    bob.add_event_callback(on_megolm, nio.MegolmEvent)
    try:
        # Both publish device keys and one-time keys on their first syncs.
        await sync_round(alice)
        await sync_round(bob)
        counts = await server.services.e2ee.one_time_key_counts(alice.user_id, alice.device_id)
        assert counts["signed_curve25519"] > 0

        created = await alice.room_create(
            invite=[bob.user_id],
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await sync_until(bob, lambda: room_id in bob.invited_rooms)
        assert isinstance(await bob.join(room_id), nio.JoinResponse)
        await sync_until(bob, lambda: room_id in bob.rooms and bob.rooms[room_id].encrypted)
        await sync_until(alice, lambda: bob.user_id in alice.rooms[room_id].users
                         and bool(alice.device_store.active_user_devices(bob.user_id)))

        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": SECRET_1},
                                     ignore_unverified_devices=True)
        assert isinstance(sent, nio.RoomSendResponse), sent
        await sync_until(bob, lambda: any(e.body == SECRET_1 for e in received["bob"]))
        assert received["bob"][-1].sender == alice.user_id and received["bob"][-1].decrypted

        await sync_until(bob, lambda: bool(bob.device_store.active_user_devices(alice.user_id)), rounds=5)
        reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": SECRET_2},
                                    ignore_unverified_devices=True)
        assert isinstance(reply, nio.RoomSendResponse), reply
        await sync_until(alice, lambda: any(e.body == SECRET_2 for e in received["alice"]))
        assert received["alice"][-1].sender == bob.user_id and received["alice"][-1].decrypted
        assert undecryptable == []

        # The server stored ciphertext only.
        conn = await asyncpg.connect(server.db_url)
        try:
            rows = await conn.fetch("SELECT type, json FROM events WHERE room_id = $1", room_id)
            inbox = await conn.fetch("SELECT content FROM device_inbox")
        finally:
            await conn.close()
        types = [r["type"] for r in rows]
        assert types.count("m.room.encrypted") == 2 and "m.room.message" not in types
        for text in [r["json"] for r in rows] + [r["content"] for r in inbox]:
            assert SECRET_1 not in text and SECRET_2 not in text
    finally:
        await alice.close()
        await bob.close()
