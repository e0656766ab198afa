"""/sync over real HTTP: deltas, long-polling, filters, ephemeral data, unread counts, gap filling."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, client: httpx.AsyncClient, reg: dict[str, Any]) -> None:
        self.c = client
        self.user_id: str = reg["user_id"]
        self.h = auth_header(reg["access_token"])
        self.since: str | None = None

    async def sync(self, **params: Any) -> dict[str, Any]:
        if self.since and "since" not in params:
            params["since"] = self.since
        params.setdefault("timeout", 0)
        r = await self.c.get(f"{V3}/sync", headers=self.h, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        self.since = body["next_batch"]
        return body

    async def send(self, room: str, body: str, **extra: Any) -> str:
        r = await self.c.put(f"{V3}/rooms/{room}/send/m.room.message/{random.getrandbits(64)}", headers=self.h,
                             json={"msgtype": "m.text", "body": body, **extra})
        assert r.status_code == 200, r.text
        return r.json()["event_id"]


async def setup_pair(client: httpx.AsyncClient) -> tuple[User, User, str]:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    r = await client.post(f"{V3}/createRoom", headers=a.h, json={"preset": "public_chat", "name": "Chat"})
    room = r.json()["room_id"]
    assert (await client.post(f"{V3}/join/{room}", headers=b.h, json={})).status_code == 200
    return a, b, room


def timeline(body: dict[str, Any], room: str) -> list[dict[str, Any]]:
    return body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])


def ephemeral(body: dict[str, Any], room: str) -> list[dict[str, Any]]:
    return body.get("rooms", {}).get("join", {}).get(room, {}).get("ephemeral", {}).get("events", [])


async def test_initial_and_incremental_sync(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    first = await b.sync()
    joined = first["rooms"]["join"][room]
    types = {e["type"] for e in joined["state"]["events"]} | {e["type"] for e in joined["timeline"]["events"]}
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= types
    assert joined["summary"]["m.joined_member_count"] == 2
    assert joined["timeline"]["prev_batch"]
    eid = await a.send(room, "hello")
    delta = await b.sync()
    assert [e["event_id"] for e in timeline(delta, room)] == [eid]
    assert "room_id" not in timeline(delta, room)[0]
    assert timeline(delta, room)[0]["unsigned"]["age"] >= 0
    # Nothing new: an empty response.
    again = await b.sync()
    assert timeline(again, room) == []
    # The sender sees its transaction id.
    own = await a.sync()
    mine = [e for e in timeline(own, room) if e["event_id"] == eid]
    assert mine and "transaction_id" in mine[0]["unsigned"]
    r = await client.get(f"{V3}/sync", headers=a.h, params={"since": "garbage"})
    assert r.status_code == 400


async def test_ephemeral_and_per_user_data_reach_sync(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    await a.sync()
    await b.sync()
    eid = await a.send(room, "hi")
    # typing start and stop
    r = await client.put(f"{V3}/rooms/{room}/typing/{a.user_id}", headers=a.h, json={"typing": True, "timeout": 30000})
    assert r.status_code == 200
    body = await b.sync()
    typing = [e for e in ephemeral(body, room) if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == [a.user_id]
    await client.put(f"{V3}/rooms/{room}/typing/{a.user_id}", headers=a.h, json={"typing": False})
    body = await b.sync()
    typing = [e for e in ephemeral(body, room) if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == []
    r = await client.put(f"{V3}/rooms/{room}/typing/{a.user_id}", headers=b.h, json={"typing": True})
    assert r.status_code == 403
    # a receipt
    r = await client.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(eid, safe='')}", headers=b.h, json={})
    assert r.status_code == 200, r.text
    body = await a.sync()
    receipts = [e for e in ephemeral(body, room) if e["type"] == "m.receipt"]
    assert receipts and b.user_id in receipts[0]["content"][eid]["m.read"]
    # a private receipt reaches only its owner
    await client.post(f"{V3}/rooms/{room}/receipt/m.read.private/{quote(eid, safe='')}", headers=a.h, json={})
    body_b = await b.sync()
    for e in ephemeral(body_b, room):
        if e["type"] == "m.receipt":
            assert all(a.user_id not in users for r in e["content"].values() for users in r.values())
    own = await a.sync()
    private = [e for e in ephemeral(own, room) if e["type"] == "m.receipt"]
    assert private and a.user_id in private[0]["content"][eid]["m.read.private"]
    # presence
    r = await client.put(f"{V3}/presence/{a.user_id}/status", headers=a.h,
                         json={"presence": "unavailable", "status_msg": "lunch"})
    assert r.status_code == 200
    body = await b.sync(set_presence="offline")
    pres = [p for p in body.get("presence", {}).get("events", []) if p["sender"] == a.user_id]
    assert pres and pres[-1]["content"]["presence"] == "unavailable" and pres[-1]["content"]["status_msg"] == "lunch"
    r = await client.get(f"{V3}/presence/{a.user_id}/status", headers=b.h)
    assert r.json()["presence"] == "unavailable"
    # account data and tags reach the owner's other sessions
    r = await client.put(f"{V3}/user/{b.user_id}/account_data/org.example.settings", headers=b.h, json={"x": 1})
    assert r.status_code == 200
    r = await client.put(f"{V3}/user/{b.user_id}/rooms/{room}/tags/m.favourite", headers=b.h, json={"order": 0.5})
    assert r.status_code == 200
    body = await b.sync()
    assert {"type": "org.example.settings", "content": {"x": 1}} in body["account_data"]["events"]
    room_data = body["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}} in room_data
    r = await client.get(f"{V3}/user/{b.user_id}/rooms/{room}/tags", headers=b.h)
    assert r.json() == {"tags": {"m.favourite": {"order": 0.5}}}
    await client.delete(f"{V3}/user/{b.user_id}/rooms/{room}/tags/m.favourite", headers=b.h)
    assert (await client.get(f"{V3}/user/{b.user_id}/rooms/{room}/tags", headers=b.h)).json() == {"tags": {}}
    r = await client.put(f"{V3}/user/{b.user_id}/account_data/m.fully_read", headers=b.h, json={})
    assert r.status_code == 405 and r.json()["errcode"] == "M_BAD_JSON"
    r = await client.put(f"{V3}/user/{a.user_id}/account_data/x", headers=b.h, json={})
    assert r.status_code == 403
    r = await client.get(f"{V3}/user/{b.user_id}/account_data/org.example.settings", headers=b.h)
    assert r.json() == {"x": 1}
    # read markers set m.fully_read and the receipt
    r = await client.post(f"{V3}/rooms/{room}/read_markers", headers=b.h, json={"m.fully_read": eid, "m.read": eid})
    assert r.status_code == 200
    body = await b.sync()
    assert {"type": "m.fully_read", "content": {"event_id": eid}} in body["rooms"]["join"][room]["account_data"]["events"]


async def test_long_poll_wakes_and_times_out(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    await b.sync()
    started = time.monotonic()
    empty = await b.sync(timeout=400)
    assert time.monotonic() - started >= 0.35
    assert timeline(empty, room) == []

    async def send_later() -> str:
        await asyncio.sleep(0.3)
        return await a.send(room, "wake up")

    task = asyncio.create_task(send_later())
    started = time.monotonic()
    body = await b.sync(timeout=10_000)
    elapsed = time.monotonic() - started
    eid = await task
    assert [e["event_id"] for e in timeline(body, room)] == [eid]
    assert elapsed < 1.3  # the event came at 0.3 s; the answer within 1 s of it


async def test_gaps_fill_exactly_from_prev_batch(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False})
    async with srv.client() as client:
        a, b, room = await setup_pair(client)
        await b.sync()
        sent: list[str] = []
        seen: list[str] = []
        rng = random.Random(7)
        while len(sent) < 1000:
            batch = rng.randint(1, 40)
            sent.extend(await asyncio.gather(*(a.send(room, f"m{len(sent) + i}") for i in range(batch))))
            limit = rng.randint(1, 30)
            f = json.dumps({"room": {"timeline": {"limit": limit}}})
            body = await b.sync(filter=f)
            tl = body["rooms"]["join"][room]["timeline"]
            events = [e["event_id"] for e in tl["events"] if e["type"] == "m.room.message"]
            if tl["limited"]:
                # Fill the gap with /messages from prev_batch back to where we were.
                gap: list[str] = []
                token = tl["prev_batch"]
                while True:
                    r = await client.get(f"{V3}/rooms/{room}/messages", headers=b.h,
                                         params={"from": token, "dir": "b", "limit": 17})
                    chunk = r.json()
                    ids = [e["event_id"] for e in chunk["chunk"] if e["type"] == "m.room.message"]
                    stop = False
                    for eid in ids:
                        if seen and eid == seen[-1]:
                            stop = True
                            break
                        gap.append(eid)
                    if stop or "end" not in chunk:
                        break
                    token = chunk["end"]
                seen.extend(reversed(gap))
            seen.extend(events)
        assert len(seen) == len(set(seen)) == len(sent)  # nothing repeated
        assert set(seen) == set(sent)  # nothing skipped
        # And in the room's one linear order, as /messages reads it forwards.
        order: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"dir": "f", "limit": 500}
            if token:
                params["from"] = token
            chunk = (await client.get(f"{V3}/rooms/{room}/messages", headers=b.h, params=params)).json()
            order.extend(e["event_id"] for e in chunk["chunk"] if e["type"] == "m.room.message")
            if "end" not in chunk:
                break
            token = chunk["end"]
        assert order == seen


async def test_many_idle_long_polls_wake_for_one_message(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False})
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    # Generous client timeouts: 300 initial syncs at once are slow on a busy 2-core machine.
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120, limits=limits) as client:
        owner = User(client, await register(client, "owner"))
        room = (await client.post(f"{V3}/createRoom", headers=owner.h, json={"preset": "public_chat"})).json()["room_id"]
        users = [User(client, r) for r in await asyncio.gather(*(register(client, f"m{i}") for i in range(299)))]
        for chunk in range(0, 299, 50):
            await asyncio.gather(*(client.post(f"{V3}/join/{room}", headers=u.h, json={})
                                   for u in users[chunk:chunk + 50]))
        members = (await client.get(f"{V3}/rooms/{room}/joined_members", headers=owner.h)).json()["joined"]
        assert len(members) == 300
        await asyncio.gather(*(u.sync() for u in users))
        # Everyone came online during those syncs: one more round takes in that presence.
        await asyncio.gather(*(u.sync() for u in users))
        # 500 waiting requests: every member once, and 201 of them twice (two devices' worth).
        pollers = users + users[:201]
        tasks = []
        for i in range(0, len(pollers), 50):
            # Open the connections in steps, as real clients arrive, not in one burst of SYNs.
            tasks += [asyncio.create_task(u.c.get(f"{V3}/sync", headers=u.h,
                                                  params={"since": u.since, "timeout": 20_000}))
                      for u in pollers[i:i + 50]]
            await asyncio.sleep(0.2)
        for _ in range(100):
            if srv.services.notifier.waiter_count() == 500:
                break
            await asyncio.sleep(0.1)
        assert srv.services.notifier.waiter_count() == 500
        eid = await owner.send(room, "all hands")
        results = await asyncio.wait_for(asyncio.gather(*tasks), 15)
        for r in results:
            assert r.status_code == 200
            assert [e["event_id"] for e in timeline(r.json(), room)] == [eid]
        assert srv.services.notifier.waiter_count() == 0


async def test_filters(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    c = User(client, await register(client, "carol"))
    await client.post(f"{V3}/join/{room}", headers=c.h, json={})
    body = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    r = await client.post(f"{V3}/user/{b.user_id}/filter", headers=b.h, json=body)
    fid = r.json()["filter_id"]
    assert fid.isdigit()
    r2 = await client.post(f"{V3}/user/{b.user_id}/filter", headers=b.h, json=body)
    assert r2.json()["filter_id"] == fid  # identical filter, same ID
    r3 = await client.post(f"{V3}/user/{b.user_id}/filter", headers=b.h, json={"room": {"timeline": {"limit": 2}}})
    assert r3.json()["filter_id"] != fid
    r = await client.get(f"{V3}/user/{b.user_id}/filter/{fid}", headers=b.h)
    assert r.json() == body
    assert (await client.get(f"{V3}/user/{b.user_id}/filter/999", headers=b.h)).status_code == 404
    r = await client.post(f"{V3}/user/{b.user_id}/filter", headers=b.h, json={"room": {"timeline": {"limit": "x"}}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"

    await a.send(room, "from alice")
    initial = await b.sync(filter=fid)
    joined = initial["rooms"]["join"][room]
    assert [e["sender"] for e in joined["timeline"]["events"]] == [a.user_id]
    members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {a.user_id, b.user_id}  # the sender, and the syncing user; carol is lazy-loaded away

    await client.put(f"{V3}/rooms/{room}/state/m.room.topic", headers=a.h, json={"topic": "t"})
    await a.send(room, "after topic")
    inline = json.dumps({"room": {"timeline": {"not_types": ["m.room.message"]}}})
    body_nt = await b.sync(filter=inline)
    assert {e["type"] for e in timeline(body_nt, room)} == {"m.room.topic"}

    await a.send(room, "fields")
    fields = json.dumps({"event_fields": ["type", "content.body"]})
    body_f = await b.sync(filter=fields)
    assert timeline(body_f, room) == [{"type": "m.room.message", "content": {"body": "fields"}}]


async def test_unread_counts_and_mentions(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    await b.sync()
    await a.send(room, "just chatting")
    await a.send(room, "hey bob, look", **{"m.mentions": {"user_ids": [b.user_id]}})
    body = await b.sync()
    counts = body["rooms"]["join"][room]["unread_notifications"]
    assert counts == {"notification_count": 2, "highlight_count": 1}
    last = timeline(body, room)[-1]["event_id"]
    r = await client.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(last, safe='')}", headers=b.h, json={})
    assert r.status_code == 200
    body = await b.sync()
    assert body["rooms"]["join"][room]["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}


async def test_leave_shows_the_leave_and_nothing_later(client: httpx.AsyncClient) -> None:
    a, b, room = await setup_pair(client)
    await b.sync()
    await a.send(room, "before")
    await client.post(f"{V3}/rooms/{room}/leave", headers=b.h, json={})
    await a.send(room, "after")
    body = await b.sync()
    left = body["rooms"]["leave"][room]
    bodies = [e["content"].get("body") for e in left["timeline"]["events"]]
    assert "before" in bodies and "after" not in bodies
    assert left["timeline"]["events"][-1]["type"] == "m.room.member"
    later = await b.sync()
    assert room not in later.get("rooms", {}).get("leave", {})


async def test_invites_carry_stripped_state_and_ignored_users_are_hidden(client: httpx.AsyncClient) -> None:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    m = User(client, await register(client, "mallory"))
    await b.sync()
    r = await client.post(f"{V3}/createRoom", headers=a.h, json={"name": "Secret", "invite": [b.user_id],
                                                                  "is_direct": True})
    room = r.json()["room_id"]
    body = await b.sync()
    state = body["rooms"]["invite"][room]["invite_state"]["events"]
    kinds = {(e["type"], e["state_key"]) for e in state}
    assert ("m.room.name", "") in kinds and ("m.room.member", a.user_id) in kinds
    invite = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == b.user_id][0]
    assert invite["content"]["is_direct"] is True
    # Ignoring mallory hides her invites and her messages.
    await client.put(f"{V3}/user/{b.user_id}/account_data/m.ignored_user_list", headers=b.h,
                     json={"ignored_users": {m.user_id: {}}})
    await b.sync()
    r = await client.post(f"{V3}/createRoom", headers=m.h, json={"invite": [b.user_id], "preset": "public_chat"})
    mroom = r.json()["room_id"]
    body = await b.sync()
    assert mroom not in body.get("rooms", {}).get("invite", {})
    await client.post(f"{V3}/join/{mroom}", headers=b.h, json={})
    await b.sync()
    await m.send(mroom, "spam")
    body = await b.sync()
    assert not [e for e in timeline(body, mroom) if e.get("content", {}).get("body") == "spam"]
