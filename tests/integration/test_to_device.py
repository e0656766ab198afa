"""Send-to-device: the per-device inbox, delivered exactly once across repeated syncs and disconnects."""

from __future__ import annotations

from typing import Any

import httpx

from homeserver.infra.bus import StreamUpdate
from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


async def second_device(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    r = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                               "identifier": {"type": "m.id.user", "user": user}})
    assert r.status_code == 200
    return r.json()


async def test_to_device_exactly_once(client: httpx.AsyncClient, server: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    bob2 = await second_device(client, "bob")
    ah = auth_header(alice["access_token"])
    e2ee = server.services.e2ee
    published: list[StreamUpdate] = []
    server.services.bus.subscribe(published.append)
    buid, bdev, bdev2 = bob["user_id"], bob["device_id"], bob2["device_id"]

    start = (await e2ee.max_positions())[0]
    for i in range(3):
        body = {"messages": {buid: {bdev: {"n": i, "body": "secret-ish"}}}}
        r = await client.put(f"{V3}/sendToDevice/m.test/txn{i}", headers=ah, json=body)
        assert r.status_code == 200 and r.json() == {}
    # A retry with the same transaction ID sends nothing more.
    r = await client.put(f"{V3}/sendToDevice/m.test/txn0", headers=ah,
                         json={"messages": {buid: {bdev: {"n": 0, "body": "secret-ish"}}}})
    assert r.status_code == 200
    to_device_updates = [u for u in published if u.stream == "to_device"]
    assert len(to_device_updates) == 3 and all(u.users == frozenset({buid}) for u in to_device_updates)
    assert server.services.notifier.current_token().to_device == start + 3

    msgs, pos = await e2ee.to_device_for_sync(buid, bdev, start, limit=2)
    assert [m["content"]["n"] for m in msgs] == [0, 1]
    assert msgs[0] == {"type": "m.test", "sender": alice["user_id"], "content": {"n": 0, "body": "secret-ish"}}
    # The client lost that response and syncs again with the same token: the same messages.
    again, pos_again = await e2ee.to_device_for_sync(buid, bdev, start, limit=2)
    assert again == msgs and pos_again == pos
    # Acknowledged by syncing with the new position: the rest, then nothing.
    rest, pos2 = await e2ee.to_device_for_sync(buid, bdev, pos)
    assert [m["content"]["n"] for m in rest] == [2]
    none, pos3 = await e2ee.to_device_for_sync(buid, bdev, pos2)
    assert none == [] and pos3 == pos2
    # Going back to an acknowledged token does not resurrect deleted messages.
    old, _ = await e2ee.to_device_for_sync(buid, bdev, start)
    assert old == []
    # The other device got nothing.
    assert (await e2ee.to_device_for_sync(buid, bdev2, 0))[0] == []

    # '*' reaches every device of the user; unknown devices and remote users are dropped.
    r = await client.put(f"{V3}/sendToDevice/m.star/t-star", headers=ah, json={"messages": {
        buid: {"*": {"all": True}, "UNKNOWN": {"x": 1}}, "@remote:elsewhere.example": {"D": {"x": 1}},
    }})
    assert r.status_code == 200
    for device in (bdev, bdev2):
        got, _ = await e2ee.to_device_for_sync(buid, device, pos3 if device == bdev else 0)
        assert [(m["type"], m["content"]) for m in got] == [("m.star", {"all": True})]

    # Logging a device out empties its inbox.
    await client.post(f"{V3}/logout", headers=auth_header(bob2["access_token"]))
    assert (await e2ee.to_device_for_sync(buid, bdev2, 0))[0] == []


async def test_to_device_txn_ids_are_per_device(client: httpx.AsyncClient, server: Any) -> None:
    alice = await register(client, "alice")
    alice2 = await second_device(client, "alice")
    bob = await register(client, "bob")
    body = {"messages": {bob["user_id"]: {bob["device_id"]: {"x": 1}}}}
    for a in (alice, alice2):
        r = await client.put(f"{V3}/sendToDevice/m.test/same", headers=auth_header(a["access_token"]), json=body)
        assert r.status_code == 200
    msgs, _ = await server.services.e2ee.to_device_for_sync(bob["user_id"], bob["device_id"], 0)
    assert len(msgs) == 2


async def test_to_device_bad_bodies(client: httpx.AsyncClient, server: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    ah = auth_header(alice["access_token"])
    for i, body in enumerate([{}, {"messages": []}, {"messages": {bob["user_id"]: []}},
                              {"messages": {bob["user_id"]: {bob["device_id"]: "text"}}}]):
        r = await client.put(f"{V3}/sendToDevice/m.test/bad{i}", headers=ah, json=body)
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", r.text
    assert (await server.services.e2ee.to_device_for_sync(bob["user_id"], bob["device_id"], 0))[0] == []
    r = await client.put(f"{V3}/sendToDevice/m.test/nobody", json={"messages": {}})
    assert r.status_code == 401


async def test_to_device_through_sync(client: httpx.AsyncClient, server: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    ah, bh = auth_header(alice["access_token"]), auth_header(bob["access_token"])
    r = await client.get(f"{V3}/sync", headers=bh, params={"timeout": "0"})
    first = r.json()
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert "to_device" not in first
    since = first["next_batch"]

    for i in range(3):
        body = {"messages": {bob["user_id"]: {bob["device_id"]: {"n": i}}}}
        assert (await client.put(f"{V3}/sendToDevice/m.test/t{i}", headers=ah, json=body)).status_code == 200

    r = await client.get(f"{V3}/sync", headers=bh, params={"since": since, "timeout": "0"})
    got = r.json()
    assert [e["content"]["n"] for e in got["to_device"]["events"]] == [0, 1, 2]
    # The response was "lost": syncing again from the same token gives the same messages.
    r = await client.get(f"{V3}/sync", headers=bh, params={"since": since, "timeout": "0"})
    assert r.json()["to_device"] == got["to_device"]
    # Syncing from the new token acknowledges them: nothing more.
    r = await client.get(f"{V3}/sync", headers=bh, params={"since": got["next_batch"], "timeout": "0"})
    assert "to_device" not in r.json()
    # A long-poll is woken by a to-device message (the key counts alone do not end it).
    import asyncio

    poll = asyncio.create_task(client.get(f"{V3}/sync", headers=bh,
                                          params={"since": r.json()["next_batch"], "timeout": "10000"}))
    await asyncio.sleep(0.3)
    assert not poll.done()
    body = {"messages": {bob["user_id"]: {"*": {"n": 99}}}}
    assert (await client.put(f"{V3}/sendToDevice/m.test/t99", headers=ah, json=body)).status_code == 200
    woke = (await asyncio.wait_for(poll, 5)).json()
    assert woke["to_device"]["events"][0]["content"] == {"n": 99}
