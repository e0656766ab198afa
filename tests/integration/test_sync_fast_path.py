"""/sync served from memory: concurrent writers, the ASGI lane's headers and errors, token and filter caches."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from tests.conftest import auth_header, register
from tests.integration.test_sync import V3, User, timeline

BIG_TIMELINE = json.dumps({"room": {"timeline": {"limit": 1000}, "state": {"lazy_load_members": True}}})


async def pair_in_rooms(client: httpx.AsyncClient, n: int) -> tuple[User, User, list[str]]:
    """Alice and Bob, both in `n` new public rooms Alice made."""
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    rooms = []
    for i in range(n):
        r = await client.post(f"{V3}/createRoom", headers=a.h, json={"preset": "public_chat", "name": f"r{i}"})
        rooms.append(r.json()["room_id"])
        assert (await client.post(f"{V3}/join/{rooms[-1]}", headers=b.h, json={})).status_code == 200
    return a, b, rooms


async def test_concurrent_sends_in_many_rooms_arrive_exactly_once(client: httpx.AsyncClient) -> None:
    a, b, rooms = await pair_in_rooms(client, 6)
    await b.sync(filter=BIG_TIMELINE)
    sent: dict[str, set[str]] = {room: set() for room in rooms}

    async def sender(who: User, n: int) -> None:
        for k in range(n):
            room = random.choice(rooms)
            sent[room].add(await who.send(room, f"{who.user_id} {k}"))

    seen: dict[str, list[str]] = {room: [] for room in rooms}
    done = asyncio.Event()

    async def syncer() -> None:
        while not done.is_set():
            body = await b.sync(filter=BIG_TIMELINE, timeout=500)
            for room in rooms:
                tl = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                assert not tl.get("limited"), "a 1000-event window never needs a gap here"
                seen[room].extend(e["event_id"] for e in tl.get("events", []) if e["type"] == "m.room.message")

    task = asyncio.ensure_future(syncer())
    # Concurrent writers, several per room: commits and their publication interleave.
    await asyncio.gather(*(sender(w, 25) for w in (a, a, a, b, b, b)))
    for _ in range(100):
        if all(set(seen[r]) >= sent[r] for r in rooms):
            break
        await asyncio.sleep(0.1)
    done.set()
    await task
    for room in rooms:
        assert len(seen[room]) == len(set(seen[room])), "an event came twice"
        assert set(seen[room]) == sent[room]


async def test_sync_lane_headers_errors_and_prefixes(client: httpx.AsyncClient) -> None:
    a = User(client, await register(client, "alice"))
    r = await client.get(f"{V3}/sync", params={"timeout": 0})
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    r = await client.get(f"{V3}/sync", params={"timeout": 0}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = await client.get(f"{V3}/sync", params={"timeout": 0, "since": "garbage"}, headers=a.h)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.get(f"{V3}/sync", params={"timeout": "soon"}, headers=a.h)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.get(f"{V3}/sync", params={"timeout": 0, "filter": "{not json"}, headers=a.h)
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = await client.get(f"{V3}/sync", params={"timeout": 0}, headers={**a.h, "X-Request-Id": "trace-me"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "trace-me"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "next_batch" in r.json()
    # The token may also come as a query parameter, and r0 and a trailing slash are the same endpoint.
    token = a.h["Authorization"].split(" ", 1)[1]
    r = await client.get("/_matrix/client/r0/sync/", params={"timeout": 0, "access_token": token})
    assert r.status_code == 200 and "next_batch" in r.json()
    # Other methods on the path still get Matrix's answer from the main app.
    r = await client.post(f"{V3}/sync", headers=a.h, json={})
    assert r.status_code == 405 and r.json()["errcode"] == "M_UNRECOGNIZED"
    metrics = (await client.get("/metrics")).text
    assert 'endpoint="/_matrix/client/v3/sync",method="GET",status="200"' in metrics


async def test_a_logged_out_token_is_refused_at_once(client: httpx.AsyncClient) -> None:
    reg = await register(client, "alice")
    h = auth_header(reg["access_token"])
    for _ in range(2):  # the owner is now cached
        assert (await client.get(f"{V3}/sync", headers=h, params={"timeout": 0})).status_code == 200
    assert (await client.post(f"{V3}/logout", headers=h, json={})).status_code == 200
    r = await client.get(f"{V3}/sync", headers=h, params={"timeout": 0})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = await client.get(f"{V3}/account/whoami", headers=h)
    assert r.status_code == 401

    # Logging out everywhere from one device refuses the other device's cached token too.
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
             "password": "correct horse"}
    tokens = []
    for _ in range(2):
        r = await client.post(f"{V3}/login", json=login)
        assert r.status_code == 200, r.text
        tokens.append(auth_header(r.json()["access_token"]))
    for t in tokens:
        assert (await client.get(f"{V3}/sync", headers=t, params={"timeout": 0})).status_code == 200
    assert (await client.post(f"{V3}/logout/all", headers=tokens[0], json={})).status_code == 200
    for t in tokens:
        r = await client.get(f"{V3}/sync", headers=t, params={"timeout": 0})
        assert r.status_code == 401, r.text


async def test_lazy_members_follow_membership_changes(client: httpx.AsyncClient) -> None:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    r = await client.post(f"{V3}/createRoom", headers=a.h, json={"preset": "public_chat"})
    room = r.json()["room_id"]
    lazy = json.dumps({"room": {"state": {"lazy_load_members": True}}})
    await a.sync(filter=lazy)
    assert (await client.post(f"{V3}/join/{room}", headers=b.h, json={})).status_code == 200
    await a.sync(filter=lazy)
    await b.send(room, "hello")
    body = await a.sync(filter=lazy)
    assert [e["content"]["body"] for e in timeline(body, room)] == ["hello"]
    state = body["rooms"]["join"][room]["state"]["events"]
    bob_member = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == b.user_id]
    assert len(bob_member) == 1 and bob_member[0]["content"]["membership"] == "join"
    # Only the senders' memberships: Alice's own is not repeated in every incremental sync.
    assert [e["state_key"] for e in state if e["type"] == "m.room.member"] == [b.user_id]

    # Bob renames himself (a membership event), then speaks: Alice gets the new membership.
    r = await client.put(f"{V3}/profile/{b.user_id}/displayname", headers=b.h, json={"displayname": "Robert"})
    assert r.status_code == 200
    await b.send(room, "it's Robert now")
    body = await a.sync(filter=lazy)
    events = timeline(body, room)
    renames = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == b.user_id]
    assert renames and renames[-1]["content"]["displayname"] == "Robert"
    assert events[-1]["content"]["body"] == "it's Robert now"
    state = body["rooms"]["join"][room]["state"]["events"]
    # State is as of the start of the timeline: Bob's membership there (if sent) is the one before the rename.
    before = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == b.user_id]
    assert all(e["content"].get("displayname") != "Robert" for e in before)

    await b.send(room, "again")
    body = await a.sync(filter=lazy)
    state = body["rooms"]["join"][room]["state"]["events"]
    bob_member = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == b.user_id]
    assert bob_member and bob_member[0]["content"]["displayname"] == "Robert"


async def test_ignoring_and_unignoring_apply_on_the_next_sync(client: httpx.AsyncClient) -> None:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    r = await client.post(f"{V3}/createRoom", headers=a.h, json={"preset": "public_chat"})
    room = r.json()["room_id"]
    assert (await client.post(f"{V3}/join/{room}", headers=b.h, json={})).status_code == 200
    await a.sync()
    await b.send(room, "one")
    assert [e["content"].get("body") for e in timeline(await a.sync(), room)] == ["one"]
    ignore = f"{V3}/user/{a.user_id}/account_data/m.ignored_user_list"
    assert (await client.put(ignore, headers=a.h, json={"ignored_users": {b.user_id: {}}})).status_code == 200
    await a.sync()
    await b.send(room, "two")
    assert timeline(await a.sync(), room) == []
    assert (await client.put(ignore, headers=a.h, json={"ignored_users": {}})).status_code == 200
    await a.sync()
    await b.send(room, "three")
    assert [e["content"].get("body") for e in timeline(await a.sync(), room)] == ["three"]


async def test_a_stored_filter_is_resolved_per_user(client: httpx.AsyncClient) -> None:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    r = await client.post(f"{V3}/user/{a.user_id}/filter", headers=a.h, json={"room": {"timeline": {"limit": 1}}})
    fid = r.json()["filter_id"]
    assert (await client.get(f"{V3}/sync", headers=a.h, params={"timeout": 0, "filter": fid})).status_code == 200
    # Bob has no filter of that ID: alice's (now cached) is not his.
    r = await client.get(f"{V3}/sync", headers=b.h, params={"timeout": 0, "filter": fid})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"


async def test_gaps_under_concurrent_senders_fill_exactly(client: httpx.AsyncClient) -> None:
    """Small random timeline limits while several rooms are written at once: each `limited`
    window's gap, read back through /messages from prev_batch, joins up with what came before."""
    a, b, rooms = await pair_in_rooms(client, 3)
    await b.sync()
    sent: dict[str, set[str]] = {room: set() for room in rooms}
    seen: dict[str, list[str]] = {room: [] for room in rooms}
    rng = random.Random(11)

    async def sender(k: int) -> None:
        for n in range(40):
            room = rooms[(k + n) % len(rooms)]
            sent[room].add(await a.send(room, f"{k}-{n}"))

    async def fill_gap(room: str, token: str) -> list[str]:
        gap: list[str] = []
        while True:
            r = await client.get(f"{V3}/rooms/{room}/messages", headers=b.h,
                                 params={"from": token, "dir": "b", "limit": 7})
            chunk = r.json()
            for eid in (e["event_id"] for e in chunk["chunk"] if e["type"] == "m.room.message"):
                if seen[room] and eid == seen[room][-1]:
                    return gap[::-1]
                gap.append(eid)
            if "end" not in chunk:
                return gap[::-1]
            token = chunk["end"]

    done = asyncio.Event()

    async def syncer() -> None:
        while True:
            finished = done.is_set()
            f = json.dumps({"room": {"timeline": {"limit": rng.randint(1, 4)}}})
            body = await b.sync(filter=f, timeout=200)
            for room in rooms:
                tl = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline")
                if not tl:
                    continue
                if tl["limited"]:
                    seen[room].extend(await fill_gap(room, tl["prev_batch"]))
                seen[room].extend(e["event_id"] for e in tl["events"] if e["type"] == "m.room.message")
            if finished:
                return

    task = asyncio.ensure_future(syncer())
    await asyncio.gather(*(sender(k) for k in range(4)))
    await asyncio.sleep(0.5)
    done.set()
    await task
    for room in rooms:
        assert len(seen[room]) == len(set(seen[room])), "an event came twice"
        assert set(seen[room]) == sent[room], "an event was skipped"


async def test_a_message_preloads_what_the_woken_lazy_syncs_read(server: Any, client: httpx.AsyncClient) -> None:
    """Before a room's syncs wake, its membership map and the sender's membership event are in
    memory (else the first lazy-loading syncs to ask hold the others back on a query)."""
    _, b, (room,) = await pair_in_rooms(client, 1)
    c = User(client, await register(client, "carol"))
    assert (await client.post(f"{V3}/join/{room}", headers=c.h, json={})).status_code == 200
    services = server.services
    # As after a restart: nothing of the room in memory.
    services.sync.cache._members.pop(room, None)
    services.events._cache.clear()
    await c.send(room, "hello")
    assert services.sync.cache.has_members(room)
    known = services.sync.cache.member_events(room, [c.user_id], 10**12)
    assert known and known[c.user_id] in services.events._cache
    body = await b.sync(filter=json.dumps({"room": {"state": {"lazy_load_members": True}}}))
    joined = body["rooms"]["join"][room]
    assert timeline(body, room)[-1]["content"]["body"] == "hello"
    members = [e for e in joined["state"]["events"] + joined["timeline"]["events"] if e["type"] == "m.room.member"]
    assert c.user_id in {e["state_key"] for e in members}
