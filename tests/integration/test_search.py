"""Server-side message search over real HTTP: membership, history visibility, ordering, pagination."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, client: httpx.AsyncClient, login: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = login["user_id"]
        self.h = auth_header(login["access_token"])
        self._txn = 0

    async def create_room(self, **body: Any) -> str:
        r = await self.client.post(f"{V3}/createRoom", headers=self.h, json=body)
        assert r.status_code == 200, r.text
        return r.json()["room_id"]

    async def join(self, room: str) -> None:
        r = await self.client.post(f"{V3}/join/{room}", headers=self.h, json={})
        assert r.status_code == 200, r.text

    async def leave(self, room: str) -> None:
        r = await self.client.post(f"{V3}/rooms/{room}/leave", headers=self.h, json={})
        assert r.status_code == 200, r.text

    async def say(self, room: str, body: str) -> str:
        self._txn += 1
        r = await self.client.put(
            f"{V3}/rooms/{room}/send/m.room.message/t{self._txn}", headers=self.h,
            json={"msgtype": "m.text", "body": body},
        )
        assert r.status_code == 200, r.text
        return r.json()["event_id"]

    async def search(self, term: str, next_batch: str | None = None, **criteria: Any) -> dict[str, Any]:
        body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
        params = {"next_batch": next_batch} if next_batch else None
        r = await self.client.post(f"{V3}/search", headers=self.h, json=body, params=params)
        assert r.status_code == 200, r.text
        return r.json()["search_categories"]["room_events"]


async def users(client: httpx.AsyncClient, *names: str) -> list[User]:
    return [User(client, await register(client, n)) for n in names]


def ids(res: dict[str, Any]) -> list[str]:
    return [r["result"]["event_id"] for r in res["results"]]


async def test_finds_a_message_by_a_word(client: httpx.AsyncClient) -> None:
    alice, bob = await users(client, "alice", "bob")
    room = await alice.create_room(invite=[bob.user_id], name="Plans")
    await bob.join(room)
    e1 = await alice.say(room, "The martians are landing tomorrow")
    await bob.say(room, "Nothing to see here")
    res = await bob.search("martians")
    assert ids(res) == [e1]
    hit = res["results"][0]
    assert hit["result"]["content"]["body"] == "The martians are landing tomorrow"
    assert hit["result"]["room_id"] == room and hit["rank"] > 0
    assert res["count"] == 1
    # Stemming: 'landed' finds 'landing'; the highlight is the word as written.
    res = await bob.search("landed")
    assert ids(res) == [e1] and res["highlights"] == ["landing"]
    # Room names are searchable too (content.name), and keys restrict what is searched.
    res = await bob.search("plans")
    assert [r["result"]["type"] for r in res["results"]] == ["m.room.name"]
    assert (await bob.search("plans", keys=["content.body"]))["results"] == []
    assert (await bob.search("nothingmatchesthis"))["results"] == []


async def test_never_finds_what_the_user_could_not_read(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await users(client, "alice", "bob", "carol")
    shared = await alice.create_room(invite=[bob.user_id])
    await bob.join(shared)
    before = await alice.say(shared, "secret plan one")
    await bob.leave(shared)
    await alice.say(shared, "secret plan two, after bob left")
    private = await alice.create_room()
    await alice.say(private, "secret plan three, bob never here")
    res = await bob.search("secret")
    assert ids(res) == [before]
    # carol was never anywhere.
    assert (await carol.search("secret"))["results"] == []
    # A user searching a room they left stops at the leave, also for count.
    assert res["count"] == 1


async def test_joined_history_visibility(client: httpx.AsyncClient) -> None:
    alice, bob = await users(client, "alice", "bob")
    room = await alice.create_room(preset="public_chat")
    r = await client.put(f"{V3}/rooms/{room}/state/m.room.history_visibility", headers=alice.h,
                         json={"history_visibility": "joined"})
    assert r.status_code == 200, r.text
    await alice.say(room, "banana before bob joined")
    await bob.join(room)
    after = await alice.say(room, "banana after bob joined")
    assert ids(await bob.search("banana")) == [after]
    assert len((await alice.search("banana"))["results"]) == 2


async def test_rank_and_recent_ordering(client: httpx.AsyncClient) -> None:
    (alice,) = await users(client, "alice")
    room = await alice.create_room()
    weak = await alice.say(room, "a long message that mentions kiwi once among many other unrelated words here")
    strong = await alice.say(room, "kiwi kiwi kiwi")
    middle = await alice.say(room, "kiwi and kiwi again")
    res = await alice.search("kiwi", order_by="rank")
    assert ids(res) == [strong, middle, weak]
    ranks = [r["rank"] for r in res["results"]]
    assert ranks == sorted(ranks, reverse=True)
    res = await alice.search("kiwi", order_by="recent")
    assert ids(res) == [middle, strong, weak]


@pytest.mark.parametrize("order_by", ["rank", "recent"])
async def test_next_batch_returns_every_hit_once(client: httpx.AsyncClient, order_by: str) -> None:
    alice, bob = await users(client, "alice", "bob")
    room = await alice.create_room(invite=[bob.user_id])
    await bob.join(room)
    sent = set()
    for i in range(23):
        # Repeats give several hits the same rank: pagination must still be exact.
        sent.add(await alice.say(room, "mango " * (1 + i % 3) + f"number {i}"))
    other = await alice.create_room()
    await alice.say(other, "mango that bob cannot see")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        res = await bob.search("mango", token, order_by=order_by, filter={"limit": 5})
        assert res["count"] == 23
        seen += ids(res)
        pages += 1
        token = res.get("next_batch")
        if token is None:
            break
        assert pages < 20
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == sent


async def test_event_context_profile_highlights_state_groups(client: httpx.AsyncClient) -> None:
    alice, bob = await users(client, "alice", "bob")
    r = await client.put(f"{V3}/profile/{alice.user_id}/displayname", headers=alice.h, json={"displayname": "Alice A"})
    assert r.status_code == 200
    room = await alice.create_room(invite=[bob.user_id], name="Fruit")
    await bob.join(room)
    b1 = await alice.say(room, "one")
    b2 = await bob.say(room, "two")
    hit = await alice.say(room, "Papayas are tasty")
    a1 = await bob.say(room, "three")
    res = await bob.search(
        "papaya", event_context={"before_limit": 2, "after_limit": 3, "include_profile": True},
        include_state=True, groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
    )
    assert ids(res) == [hit]
    ctx = res["results"][0]["context"]
    assert [e["event_id"] for e in ctx["events_before"]] == [b2, b1]
    assert [e["event_id"] for e in ctx["events_after"]] == [a1]
    assert ctx["profile_info"][alice.user_id]["displayname"] == "Alice A"
    assert isinstance(ctx["start"], str) and isinstance(ctx["end"], str)
    # The context tokens work with /messages.
    r = await client.get(f"{V3}/rooms/{room}/messages", headers=bob.h, params={"from": ctx["start"], "dir": "b", "limit": 1})
    assert r.status_code == 200 and len(r.json()["chunk"]) == 1
    assert res["highlights"] == ["Papayas"]
    state_types = {e["type"] for e in res["state"][room]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= state_types
    assert res["groups"]["room_id"][room]["results"] == [hit]
    assert res["groups"]["sender"][alice.user_id]["results"] == [hit]


async def test_filters(client: httpx.AsyncClient) -> None:
    alice, bob = await users(client, "alice", "bob")
    r1 = await alice.create_room(invite=[bob.user_id])
    r2 = await alice.create_room(invite=[bob.user_id])
    await bob.join(r1)
    await bob.join(r2)
    a1 = await alice.say(r1, "cherry from alice")
    b1 = await bob.say(r1, "cherry from bob")
    a2 = await alice.say(r2, "cherry elsewhere")
    assert set(ids(await bob.search("cherry", filter={"rooms": [r1]}))) == {a1, b1}
    assert ids(await bob.search("cherry", filter={"not_rooms": [r1]})) == [a2]
    assert ids(await bob.search("cherry", filter={"senders": [bob.user_id]})) == [b1]
    assert set(ids(await bob.search("cherry", filter={"not_senders": [bob.user_id]}))) == {a1, a2}
    assert len(ids(await bob.search("cherry", filter={"types": ["m.room.*"]}))) == 3
    assert ids(await bob.search("cherry", filter={"not_types": ["m.room.message"]})) == []


async def test_redacted_messages_are_not_found(client: httpx.AsyncClient) -> None:
    (alice,) = await users(client, "alice")
    room = await alice.create_room()
    eid = await alice.say(room, "regrettable words")
    r = await client.put(f"{V3}/rooms/{room}/redact/{eid}/r1", headers=alice.h, json={})
    assert r.status_code == 200, r.text
    assert (await alice.search("regrettable"))["results"] == []


@pytest.mark.parametrize("body", [
    {},
    {"search_categories": []},
    {"search_categories": {"room_events": {}}},
    {"search_categories": {"room_events": {"search_term": 5}}},
    {"search_categories": {"room_events": {"search_term": "x", "order_by": "best"}}},
    {"search_categories": {"room_events": {"search_term": "x", "keys": ["content.secret"]}}},
    {"search_categories": {"room_events": {"search_term": "x", "filter": {"limit": "ten"}}}},
    {"search_categories": {"room_events": {"search_term": "x", "filter": {"rooms": "!r:x"}}}},
    {"search_categories": {"room_events": {"search_term": "x", "event_context": {"before_limit": -1}}}},
    {"search_categories": {"room_events": {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}}},
])
async def test_bad_bodies_are_m_bad_json(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    (alice,) = await users(client, "alice")
    r = await client.post(f"{V3}/search", headers=alice.h, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_BAD_JSON"


async def test_bad_next_batch_and_odd_terms(client: httpx.AsyncClient) -> None:
    (alice,) = await users(client, "alice")
    room = await alice.create_room()
    await alice.say(room, "hello world")
    body = {"search_categories": {"room_events": {"search_term": "hello"}}}
    r = await client.post(f"{V3}/search", headers=alice.h, json=body, params={"next_batch": "garbage!"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    for term in ["", "the", "\"unclosed", "a & b | !c ( ) :*", "-hello", "héllo wörld", "x" * 5000]:
        res = await alice.search(term)
        assert isinstance(res["results"], list)
    r = await client.post(f"{V3}/search", headers=alice.h, json={"search_categories": {}})
    assert r.status_code == 200 and r.json() == {"search_categories": {}}
    r = await client.post(f"{V3}/search", json=body)
    assert r.status_code == 401
