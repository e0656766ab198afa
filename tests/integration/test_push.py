"""Push over real HTTP: counters in /sync, /notifications, push rule CRUD, pushers and a push gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web

from tests.conftest import free_port, register
from tests.integration.test_sync import V3, User, timeline

PR = f"{V3}/pushrules/global"


async def three(client: httpx.AsyncClient) -> tuple[User, User, User, str]:
    a = User(client, await register(client, "alice"))
    b = User(client, await register(client, "bob"))
    c = User(client, await register(client, "carol"))
    r = await client.post(f"{V3}/createRoom", headers=a.h, json={"preset": "public_chat"})
    room = r.json()["room_id"]
    for u in (b, c):
        assert (await client.post(f"{V3}/join/{room}", headers=u.h, json={})).status_code == 200
    return a, b, c, room


def counts(body: dict[str, Any], room: str) -> dict[str, int]:
    return body["rooms"]["join"][room]["unread_notifications"]


async def test_mentions_highlight_and_receipts_clear(client: httpx.AsyncClient) -> None:
    a, b, c, room = await three(client)
    r = await client.put(f"{V3}/profile/{b.user_id}/displayname", headers=b.h, json={"displayname": "Bobby Tables"})
    assert r.status_code == 200
    # Display-name mentions are no longer a default rule (v1.17); bob opts in with the condition.
    r = await client.put(f"{PR}/override/my_name", headers=b.h, json={
        "conditions": [{"kind": "contains_display_name"}], "actions": ["notify", {"set_tweak": "highlight"}]})
    assert r.status_code == 200, r.text
    await b.sync()
    await a.send(room, "just chatting")
    await a.send(room, "look", **{"m.mentions": {"user_ids": [b.user_id]}})
    await a.send(room, "everyone!", **{"m.mentions": {"room": True}})  # alice has power 100
    await c.send(room, "everyone?", **{"m.mentions": {"room": True}})  # carol has 0 < 50
    await a.send(room, "hi bobby tables, you there")
    await a.send(room, "quiet", msgtype="m.notice")
    body = await b.sync()
    assert counts(body, room) == {"notification_count": 5, "highlight_count": 3}
    # carol sees alice's messages; her own are not counted.
    body_c = await c.sync()
    assert counts(body_c, room)["notification_count"] == 4

    r = await client.get(f"{V3}/notifications", headers=b.h)
    notes = r.json()["notifications"]
    assert [n["event"]["content"]["body"] for n in notes] == [
        "hi bobby tables, you there", "everyone?", "everyone!", "look", "just chatting"]
    assert all(n["read"] is False and n["room_id"] == room for n in notes)
    assert {"set_tweak": "highlight"} in notes[0]["actions"]
    r = await client.get(f"{V3}/notifications", headers=b.h, params={"only": "highlight"})
    assert [n["event"]["content"]["body"] for n in r.json()["notifications"]] == [
        "hi bobby tables, you there", "everyone!", "look"]
    # Paging.
    r = await client.get(f"{V3}/notifications", headers=b.h, params={"limit": 2})
    page = r.json()
    assert len(page["notifications"]) == 2 and "next_token" in page
    r = await client.get(f"{V3}/notifications", headers=b.h, params={"limit": 10, "from": page["next_token"]})
    assert [n["event"]["content"]["body"] for n in r.json()["notifications"]] == [
        "everyone!", "look", "just chatting"]
    assert "next_token" not in r.json()

    # A receipt in the middle leaves the later ones counted.
    everyone = notes[2]["event"]["event_id"]
    r = await client.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(everyone, safe='')}", headers=b.h, json={})
    assert r.status_code == 200
    body = await b.sync()
    assert counts(body, room) == {"notification_count": 2, "highlight_count": 1}
    r = await client.get(f"{V3}/notifications", headers=b.h)
    assert [n["read"] for n in r.json()["notifications"]] == [False, False, True, True, True]
    # read_markers with m.read clears the rest.
    last = timeline(body, room)[-1]["event_id"] if timeline(body, room) else notes[0]["event"]["event_id"]
    r = await client.post(f"{V3}/rooms/{room}/read_markers", headers=b.h, json={"m.read": last})
    assert r.status_code == 200
    body = await b.sync()
    assert counts(body, room) == {"notification_count": 0, "highlight_count": 0}


async def test_master_rule_silences_and_is_shown_in_account_data(client: httpx.AsyncClient) -> None:
    a, b, _c, room = await three(client)
    await b.sync()
    r = await client.put(f"{PR}/override/.m.rule.master/enabled", headers=b.h, json={"enabled": True})
    assert r.status_code == 200, r.text
    await a.send(room, "look", **{"m.mentions": {"user_ids": [b.user_id]}})
    body = await b.sync()
    assert counts(body, room) == {"notification_count": 0, "highlight_count": 0}
    rules = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert rules and rules[0]["content"]["global"]["override"][0] == {
        "rule_id": ".m.rule.master", "default": True, "enabled": True, "actions": [], "conditions": []}
    r = await client.get(f"{PR}/override/.m.rule.master/enabled", headers=b.h)
    assert r.json() == {"enabled": True}
    r = await client.get(f"{V3}/notifications", headers=b.h)
    assert r.json()["notifications"] == []
    # Turning it off again restores notifications.
    await client.put(f"{PR}/override/.m.rule.master/enabled", headers=b.h, json={"enabled": False})
    await a.send(room, "again", **{"m.mentions": {"user_ids": [b.user_id]}})
    body = await b.sync()
    assert counts(body, room) == {"notification_count": 1, "highlight_count": 1}


async def test_thread_counts_when_the_filter_asks(client: httpx.AsyncClient) -> None:
    a, b, _c, room = await three(client)
    root = await a.send(room, "root")
    await a.send(room, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    body = await b.sync(filter=json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}}))
    joined = body["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}
    # Without the filter option, threads count in the room total.
    b2 = User(client, {"user_id": b.user_id, "access_token": b.h["Authorization"].split()[1]})
    assert counts(await b2.sync(), room) == {"notification_count": 2, "highlight_count": 0}
    # A threaded receipt clears that thread only.
    threaded = next(e for e in timeline(body, room) if e["content"].get("body") == "in thread")["event_id"]
    r = await client.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(threaded, safe='')}", headers=b.h,
                          json={"thread_id": root})
    assert r.status_code == 200
    b3 = User(client, {"user_id": b.user_id, "access_token": b.h["Authorization"].split()[1]})
    assert counts(await b3.sync(), room) == {"notification_count": 1, "highlight_count": 0}


async def test_push_rule_crud_and_errors(client: httpx.AsyncClient) -> None:
    b = User(client, await register(client, "bob"))
    r = await client.get(f"{V3}/pushrules/", headers=b.h)
    assert r.status_code == 200
    assert ".m.rule.message" in [x["rule_id"] for x in r.json()["global"]["underride"]]
    r = await client.get(f"{V3}/pushrules/global/", headers=b.h)
    assert set(r.json()) == {"override", "content", "room", "sender", "underride"}

    async def put(kind: str, rule_id: str, body: dict[str, Any], **params: str) -> httpx.Response:
        return await client.put(f"{PR}/{kind}/{quote(rule_id, safe='')}", headers=b.h, json=body, params=params)

    assert (await put("content", "cake", {"pattern": "cake*lie", "actions": ["notify"]})).status_code == 200
    assert (await put("content", "pie", {"pattern": "pie", "actions": ["notify"]})).status_code == 200
    assert (await put("content", "tart", {"pattern": "tart", "actions": []}, after="cake")).status_code == 200
    assert (await put("content", "flan", {"pattern": "flan", "actions": []}, before="pie")).status_code == 200
    r = await client.get(f"{PR}/", headers=b.h)
    assert [x["rule_id"] for x in r.json()["content"]] == ["flan", "pie", "cake", "tart"]
    r = await client.get(f"{PR}/content/cake", headers=b.h)
    assert r.json() == {"rule_id": "cake", "default": False, "enabled": True, "actions": ["notify"],
                        "pattern": "cake*lie"}
    r = await client.put(f"{PR}/content/cake/actions", headers=b.h, json={"actions": ["dont_notify"]})
    assert r.status_code == 200
    assert (await client.get(f"{PR}/content/cake/actions", headers=b.h)).json() == {"actions": []}
    r = await client.put(f"{PR}/content/cake/enabled", headers=b.h, json={"enabled": False})
    assert (await client.get(f"{PR}/content/cake/enabled", headers=b.h)).json() == {"enabled": False}
    # Defaults: actions can change, nothing else.
    r = await client.put(f"{PR}/underride/.m.rule.message/actions", headers=b.h, json={"actions": []})
    assert r.status_code == 200
    assert (await client.get(f"{PR}/underride/.m.rule.message", headers=b.h)).json()["actions"] == []
    assert (await client.delete(f"{PR}/content/pie", headers=b.h)).status_code == 200

    async def err(r: httpx.Response, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.json()["errcode"] == code

    await err(await client.get(f"{PR}/content/pie", headers=b.h), 404, "M_NOT_FOUND")
    await err(await client.delete(f"{PR}/content/pie", headers=b.h), 404, "M_NOT_FOUND")
    await err(await client.get(f"{PR}/content/.m.rule.message", headers=b.h), 404, "M_NOT_FOUND")
    await err(await client.get(f"{PR}/bogus/x", headers=b.h), 400, "M_INVALID_PARAM")
    await err(await put("override", ".m.rule.master", {"actions": []}), 400, "M_INVALID_PARAM")
    await err(await client.delete(f"{PR}/override/.m.rule.master", headers=b.h), 400, "M_INVALID_PARAM")
    await err(await put("override", "x", {"actions": ["explode"]}), 400, "M_INVALID_PARAM")
    await err(await put("override", "x", {"conditions": []}), 400, "M_INVALID_PARAM")
    await err(await put("content", "x", {"actions": []}), 400, "M_INVALID_PARAM")
    await err(await put("content", "x", {"pattern": "x", "actions": []}, before="nope"), 404, "M_NOT_FOUND")
    await err(await client.put(f"{PR}/content/nope/enabled", headers=b.h, json={"enabled": True}),
              404, "M_NOT_FOUND")
    await err(await client.put(f"{PR}/content/cake/enabled", headers=b.h, json={"enabled": "yes"}),
              400, "M_INVALID_PARAM")
    await err(await client.put(f"{PR}/content/cake/actions", headers=b.h, json={}), 400, "M_MISSING_PARAM")
    await err(await client.get(f"{V3}/pushrules/device/content/cake", headers=b.h), 400, "M_INVALID_PARAM")


class Gateway:
    """A push gateway stand-in on loopback: records notifications, fails or rejects on demand."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        self.attempts = 0
        self.reject: set[str] = set()
        self.got = asyncio.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"
        self._runner: web.AppRunner | None = None

    async def notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts += 1
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"error": "busy"}, status=500)
        self.received.append(body)
        self.got.set()
        keys = [d["pushkey"] for d in body["notification"]["devices"] if d["pushkey"] in self.reject]
        return web.json_response({"rejected": keys})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/_matrix/push/v1/notify", self.notify)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, n: int, timeout: float = 10) -> None:
        async def until() -> None:
            while len(self.received) < n:
                self.got.clear()
                await self.got.wait()
        await asyncio.wait_for(until(), timeout)


@pytest.fixture
async def gateway() -> Any:
    g = Gateway()
    await g.start()
    yield g
    await g.stop()


def pusher(url: str, pushkey: str = "key1", **extra: Any) -> dict[str, Any]:
    return {"pushkey": pushkey, "kind": "http", "app_id": "org.example.app", "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "data": {"url": url, **extra.pop("data", {})}, **extra}


async def test_pushers_and_gateway(server_factory: Any, gateway: Gateway) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "push.allow_http_gateways": True,
                                "push.retry_base_s": 0.05})
    async with srv.client() as client:
        a, b, c, room = await three(client)
        # Validation.
        for bad, code in [
            (pusher("http://127.0.0.1:1/wrong/path"), "M_INVALID_PARAM"),
            ({**pusher(gateway.url), "data": {}}, "M_MISSING_PARAM"),
            ({**pusher(gateway.url), "kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
            ({k: v for k, v in pusher(gateway.url).items() if k != "lang"}, "M_MISSING_PARAM"),
        ]:
            r = await client.post(f"{V3}/pushers/set", headers=b.h, json=bad)
            assert r.status_code == 400 and r.json()["errcode"] == code, (bad, r.text)
        r = await client.post(f"{V3}/pushers/set", headers=b.h, json=pusher(gateway.url))
        assert r.status_code == 200, r.text
        r = await client.post(f"{V3}/pushers/set", headers=c.h,
                              json=pusher(gateway.url, "key2", data={"format": "event_id_only"}))
        assert r.status_code == 200, r.text
        r = await client.get(f"{V3}/pushers", headers=b.h)
        assert r.json()["pushers"] == [{
            "pushkey": "key1", "kind": "http", "app_id": "org.example.app", "app_display_name": "Example",
            "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url}}]

        # The first try gets a 500; the retry delivers. Sending never waits for it.
        gateway.fail_next = 1
        event_id = await a.send(room, "ping bob", **{"m.mentions": {"user_ids": [b.user_id]}})
        await gateway.wait(2)
        assert gateway.attempts == 3  # two pushers, one of them retried after the 500
        by_key = {n["notification"]["devices"][0]["pushkey"]: n["notification"] for n in gateway.received}
        full = by_key["key1"]
        assert full["event_id"] == event_id and full["room_id"] == room
        assert full["type"] == "m.room.message" and full["sender"] == a.user_id
        assert full["content"]["body"] == "ping bob" and full["counts"] == {"unread": 1}
        assert full["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}
        assert full["devices"][0]["app_id"] == "org.example.app"
        slim = by_key["key2"]
        assert slim["event_id"] == event_id and "content" not in slim and "sender" not in slim
        assert slim["devices"][0]["data"] == {"format": "event_id_only"}

        # A rejected pushkey removes the pusher.
        gateway.reject.add("key2")
        await a.send(room, "second")
        await gateway.wait(4)
        for _ in range(100):
            r = await client.get(f"{V3}/pushers", headers=c.h)
            if not r.json()["pushers"]:
                break
            await asyncio.sleep(0.05)
        assert r.json()["pushers"] == []

        # kind null deletes.
        r = await client.post(f"{V3}/pushers/set", headers=b.h, json={**pusher(gateway.url), "kind": None})
        assert r.status_code == 200
        assert (await client.get(f"{V3}/pushers", headers=b.h)).json()["pushers"] == []


async def test_https_required_by_default(client: httpx.AsyncClient) -> None:
    b = User(client, await register(client, "bob"))
    r = await client.post(f"{V3}/pushers/set", headers=b.h,
                          json=pusher("http://push.example.org/_matrix/push/v1/notify"))
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.post(f"{V3}/pushers/set", headers=b.h,
                          json=pusher("https://push.example.org/_matrix/push/v1/notify"))
    assert r.status_code == 200
    assert len((await client.get(f"{V3}/pushers", headers=b.h)).json()["pushers"]) == 1
    # Logging out deletes the device, and with it the pusher it set.
    login = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                                   "identifier": {"type": "m.id.user", "user": "bob"}})
    other = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.post(f"{V3}/logout", headers=b.h, json={})).status_code == 200
    assert (await client.get(f"{V3}/pushers", headers=other)).json()["pushers"] == []


async def test_first_sync_carries_default_push_rules(client: httpx.AsyncClient) -> None:
    b = User(client, await register(client, "bob"))
    body = await b.sync()
    rules = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert len(rules) == 1
    assert rules[0]["content"]["global"]["override"][0]["rule_id"] == ".m.rule.master"
    # Later syncs do not repeat it until it changes.
    body = await b.sync()
    assert not body.get("account_data", {}).get("events")


async def test_counters_in_a_300_member_room(server: Any, client: httpx.AsyncClient) -> None:
    owner = User(client, await register(client, "owner"))
    room = (await client.post(f"{V3}/createRoom", headers=owner.h, json={"preset": "public_chat"})).json()["room_id"]
    sem = asyncio.Semaphore(30)

    async def member(i: int) -> User:
        async with sem:
            u = User(client, await register(client, f"m{i:03}"))
            assert (await client.post(f"{V3}/join/{room}", headers=u.h, json={})).status_code == 200
            return u

    members = await asyncio.gather(*(member(i) for i in range(299)))
    push = server.services.push
    spent: list[float] = []
    original = push._process

    async def timed(n: Any) -> None:
        t = asyncio.get_running_loop().time()
        await original(n)
        spent.append(asyncio.get_running_loop().time() - t)

    push._process = timed
    for i in range(5):
        await owner.send(room, f"news {i}", **({"m.mentions": {"user_ids": [members[7].user_id]}} if i == 2 else {}))
    assert len(spent) == 5
    # Evaluating 299 recipients and writing their counters is a few milliseconds, not a query per member.
    assert sum(spent) / len(spent) < 0.5, spent
    for m, expected in ((members[0], {"notification_count": 5, "highlight_count": 0}),
                        (members[7], {"notification_count": 5, "highlight_count": 1})):
        assert counts(await m.sync(), room) == expected
    assert counts(await owner.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    print(f"push processing per event in a 300-member room: {1000 * sum(spent) / len(spent):.1f} ms")


async def test_counters_in_sync_stay_exact_under_racing_sends_and_receipts(
    server: Any, client: httpx.AsyncClient
) -> None:
    """The counts a sync reports are kept in memory between syncs (updated by the writer that
    changed them); under concurrent senders and receipts they must equal the database's."""
    a, b, c, room = await three(client)
    store = server.services.push.store

    async def in_db(user: User) -> int:
        rows = (await store.unread_summaries([(user.user_id, room)])).get((user.user_id, room), [])
        return sum(int(r["notif_count"]) for r in rows)

    await b.sync()
    await a.send(room, "warm")
    assert counts(await b.sync(), room)["notification_count"] == 1  # now kept in memory
    ids: list[str] = []

    async def sender(u: User, tag: str) -> None:
        for i in range(10):
            ids.append(await u.send(room, f"{tag}{i}"))

    await asyncio.gather(sender(a, "a"), sender(c, "c"))
    assert counts(await b.sync(), room)["notification_count"] == 21 == await in_db(b)
    # A receipt racing more sends: whatever the interleaving, sync and database agree.
    r, *_ = await asyncio.gather(
        client.post(f"{V3}/rooms/{room}/receipt/m.read/{ids[-1]}", headers=b.h, json={}),
        sender(a, "x"),
    )
    assert r.status_code == 200
    body = await b.sync()
    assert counts(body, room)["notification_count"] == await in_db(b)
    # After the last receipt, exactly the later messages count.
    last = await a.send(room, "settled")
    r = await client.post(f"{V3}/rooms/{room}/receipt/m.read/{last}", headers=b.h, json={})
    assert counts(await b.sync(), room)["notification_count"] == 0 == await in_db(b)
    for i in range(3):
        await c.send(room, f"after {i}")
    assert counts(await b.sync(), room)["notification_count"] == 3 == await in_db(b)
