"""Rooms under load and over time: 300 members, 20 concurrent senders, a restart, rate limits, /members?at."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import register
from tests.integration.rooms_helpers import V3, User, bodies, new_user


async def test_group_of_300(client: httpx.AsyncClient) -> None:
    owner = await new_user(client, "owner")
    room = await owner.create_room(preset="public_chat", name="big group")
    sem = asyncio.Semaphore(30)

    async def member(i: int) -> User:
        async with sem:
            u = User(client, await register(client, f"m{i:03}"))
            await u.join(room)
            return u

    members = await asyncio.gather(*(member(i) for i in range(299)))
    eid = await members[123].send(room, "hello, 299 friends")
    r = await owner.get(f"{V3}/rooms/{room}/joined_members")
    assert r.status_code == 200
    joined = r.json()["joined"]
    assert len(joined) == 300 and set(joined) == {owner.user_id, *(m.user_id for m in members)}
    # Every member reads the one message.
    for m in (members[0], members[200], owner):
        assert (await m.event(room, eid)).json()["content"]["body"] == "hello, 299 friends"
    r = await owner.get(f"{V3}/rooms/{room}/members", membership="join")
    assert len(r.json()["chunk"]) == 300


async def test_twenty_concurrent_senders(server: Any, client: httpx.AsyncClient) -> None:
    owner = await new_user(client, "owner")
    room = await owner.create_room(preset="public_chat")
    senders = [await new_user(client, f"s{i:02}") for i in range(20)]
    for s in senders:
        await s.join(room)
    per_sender = 10
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=30) for _ in senders]
    try:
        async def run(i: int) -> list[str]:
            u = User(clients[i], {"user_id": senders[i].user_id, "access_token": senders[i].token})
            return [await u.send(room, f"{i}:{n}") for n in range(per_sender)]

        acked = [eid for ids in await asyncio.gather(*(run(i) for i in range(20))) for eid in ids]
    finally:
        for c in clients:
            await c.aclose()
    assert len(set(acked)) == 200
    timeline = await owner.all_messages(room, "f", page=30)
    ids = [e["event_id"] for e in timeline]
    assert len(ids) == len(set(ids)), "an event appears twice"
    assert set(acked) <= set(ids), "an acknowledged event is missing"
    # Each sender's messages appear in the order that sender sent them.
    for i in range(20):
        mine = [b for b in bodies(timeline) if b.startswith(f"{i}:")]
        assert mine == [f"{i}:{n}" for n in range(per_sender)]
    # One linear order: in the stored DAG each event's only prev_event is the one before it,
    # and depths strictly increase along the timeline.
    stored = await server.services.events.get_events(ids)
    chain = [stored[i] for i in ids]
    for prev, ev in zip(chain, chain[1:]):
        assert ev.event.prev_event_ids() == [prev.event_id]
        assert ev.event.depth == prev.event.depth + 1
    assert len(await _extremities(server, room)) == 1


async def _extremities(server: Any, room: str) -> list[str]:
    async with server.services.db.connection() as conn:
        return await server.services.events.forward_extremities(conn, room)


async def test_rooms_survive_restart(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False})
    async with srv.client() as c:
        alice, bob = await new_user(c, "alice"), await new_user(c, "bob")
        rooms = []
        for v in ("1", "3", "11", "12"):
            room = await alice.create_room(room_version=v, name=f"room {v}", topic="kept", preset="public_chat")
            await bob.join(room)
            for n in range(5):
                await (alice if n % 2 else bob).send(room, f"{v}/{n}")
            rooms.append(room)
        before = {r: (await alice.get(f"{V3}/rooms/{r}/state")).json() for r in rooms}
        msgs_before = {r: await alice.all_messages(r) for r in rooms}
    await srv.stop()
    again = await server_factory({"rate_limits.enabled": False}, db_url=srv.db_url)
    async with again.client() as c:
        r = await c.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                              "identifier": {"type": "m.id.user", "user": "alice"}})
        alice = User(c, r.json())
        assert set((await alice.get(f"{V3}/joined_rooms")).json()["joined_rooms"]) == set(rooms)
        for room in rooms:
            state = (await alice.get(f"{V3}/rooms/{room}/state")).json()
            key = lambda evs: sorted((e["type"], e["state_key"], e["event_id"]) for e in evs)
            assert key(state) == key(before[room])
            after = await alice.all_messages(room)
            assert [e["event_id"] for e in after] == [e["event_id"] for e in msgs_before[room]]
            v = _version(state)
            assert bodies(after)[:5] == [f"{v}/{n}" for n in (4, 3, 2, 1, 0)]
            # The room still takes events after the restart.
            await alice.send(room, "after restart")


def _version(state: list[dict[str, Any]]) -> str:
    return next(e["content"]["room_version"] for e in state if e["type"] == "m.room.create")


async def test_rate_limits_and_size(server_factory: Any) -> None:
    srv = await server_factory({})
    async with srv.client() as c:
        alice = await new_user(c, "alice")
        room = await alice.create_room()
        r = await alice.send_raw(room, {"msgtype": "m.text", "body": "x" * 10_001})
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
        assert (await alice.send_raw(room, {"msgtype": "m.text", "body": "x" * 10_000})).status_code == 200
        codes = [(await alice.send_raw(room, {"msgtype": "m.text", "body": str(i)})).status_code for i in range(15)]
        assert 429 in codes and codes.count(200) <= 10
        r = await alice.send_raw(room, {"msgtype": "m.text", "body": "again"})
        assert r.status_code == 429
        assert r.json()["errcode"] == "M_LIMIT_EXCEEDED" and r.json()["retry_after_ms"] > 0
        await asyncio.sleep(0.3)  # 10 per second refill: a few more are allowed now
        assert (await alice.send_raw(room, {"msgtype": "m.text", "body": "later"})).status_code == 200
        # Invites: 50 per user per day.
        users = [await new_user(c, f"inv{i}") for i in range(51)]
        results = []
        for u in users:
            results.append((await alice.invite(room, u.user_id)).status_code)
        assert results[:50] == [200] * 50
        assert results[50] == 429


async def test_members_at(client: httpx.AsyncClient) -> None:
    alice, bob, carl = [await new_user(client, n) for n in ("alice", "bob", "carl")]
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    first = await alice.messages(room, limit=1)
    token_after_bob = first["start"]
    await carl.join(room)
    await bob.post(f"{V3}/rooms/{room}/leave")
    now = {e["state_key"]: e["content"]["membership"]
           for e in (await alice.get(f"{V3}/rooms/{room}/members")).json()["chunk"]}
    assert now == {alice.user_id: "join", bob.user_id: "leave", carl.user_id: "join"}
    r = await alice.get(f"{V3}/rooms/{room}/members", at=token_after_bob)
    assert r.status_code == 200, r.text
    then = {e["state_key"]: e["content"]["membership"] for e in r.json()["chunk"]}
    assert then == {alice.user_id: "join", bob.user_id: "join"}
    r = await alice.get(f"{V3}/rooms/{room}/members", at=token_after_bob, membership="join")
    assert {e["state_key"] for e in r.json()["chunk"]} == {alice.user_id, bob.user_id}
    r = await alice.get(f"{V3}/rooms/{room}/members", not_membership="leave")
    assert {e["state_key"] for e in r.json()["chunk"]} == {alice.user_id, carl.user_id}
    assert (await alice.get(f"{V3}/rooms/{room}/members", at="bogus")).status_code == 400
    # bob left: he sees the member list as it was when he left, not later changes.
    await (await new_user(client, "dora")).join(room)
    r = await bob.get(f"{V3}/rooms/{room}/members")
    assert r.status_code == 200
    assert "@dora:localhost" not in {e["state_key"] for e in r.json()["chunk"]}
