"""Relations, threads, the public room directory and room upgrades, each allowed and refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.rooms_helpers import V1, V3, User, bodies, new_user


def rel(kind: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": kind, "event_id": target, **extra}}


async def relations(user: User, room: str, eid: str, *tail: str, **params: Any) -> httpx.Response:
    path = "/".join([quote(eid, safe=""), *tail])
    return await user.get(f"{V1}/rooms/{room}/relations/{path}", **params)


@pytest.mark.parametrize("version", ["3", "12"])  # v3 event IDs contain "/" and "+"
async def test_relations_and_threads(client: httpx.AsyncClient, version: str) -> None:
    alice, bob, eve = [await new_user(client, n) for n in ("alice", "bob", "eve")]
    room = await alice.create_room(room_version=version, preset="public_chat")
    await bob.join(room)
    root = await alice.send(room, "thread root")
    replies = [await (bob if i % 2 else alice).send(room, f"reply {i}", **rel("m.thread", root)) for i in range(5)]
    edit = await bob.send(room, "* reply 3!", **{"m.new_content": {"msgtype": "m.text", "body": "reply 3!"}},
                          **rel("m.replace", replies[3]))
    ref1 = await alice.send(room, "see root", **rel("m.reference", root))
    react = await bob.send(room, type="m.reaction", **rel("m.annotation", root, key="👍"))

    # Bundled on the root: thread summary (latest carries its own edit), references; no annotations.
    ev = (await alice.event(room, root)).json()
    thread = ev["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 5 and thread["current_user_participated"] is True
    assert thread["latest_event"]["event_id"] == replies[4]
    assert ev["unsigned"]["m.relations"]["m.reference"] == {"chunk": [{"event_id": ref1}]}
    assert "m.annotation" not in ev["unsigned"]["m.relations"]
    r3 = (await alice.event(room, replies[3])).json()
    assert r3["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    # Participation is per user: eve joins and has not replied.
    await eve.join(room)
    assert (await eve.event(room, root)).json()["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is False

    # /relations: all, by type, by type and event type, paginated both ways.
    r = await relations(alice, room, root)
    assert r.status_code == 200, r.text
    assert {e["event_id"] for e in r.json()["chunk"]} == {*replies, ref1, react}
    r = await relations(alice, room, root, "m.thread", limit=2)
    page1 = r.json()
    assert [e["event_id"] for e in page1["chunk"]] == [replies[4], replies[3]]
    page2 = (await relations(alice, room, root, "m.thread", limit=2, **{"from": page1["next_batch"]})).json()
    assert [e["event_id"] for e in page2["chunk"]] == [replies[2], replies[1]]
    fwd = (await relations(alice, room, root, "m.thread", dir="f", limit=10)).json()
    assert [e["event_id"] for e in fwd["chunk"]] == replies and "next_batch" not in fwd
    r = await relations(alice, room, root, "m.annotation", "m.reaction")
    assert [e["event_id"] for e in r.json()["chunk"]] == [react]
    r = await relations(alice, room, root, "m.annotation", "m.room.message")
    assert r.json()["chunk"] == []
    # recurse: the edit of reply 3 relates to the root only indirectly.
    r = await relations(alice, room, root, "m.replace", recurse="true")
    assert [e["event_id"] for e in r.json()["chunk"]] == [edit] and r.json()["recursion_depth"] >= 2
    assert (await relations(alice, room, root, "m.replace")).json()["chunk"] == []

    # /threads
    other_root = await bob.send(room, "second root")
    await bob.send(room, "in second", **rel("m.thread", other_root))
    r = await alice.get(f"{V1}/rooms/{room}/threads")
    assert r.status_code == 200, r.text
    assert [e["event_id"] for e in r.json()["chunk"]] == [other_root, root]
    assert r.json()["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["count"] == 5
    page = (await alice.get(f"{V1}/rooms/{room}/threads", limit=1)).json()
    assert [e["event_id"] for e in page["chunk"]] == [other_root]
    page = (await alice.get(f"{V1}/rooms/{room}/threads", limit=1, **{"from": page["next_batch"]})).json()
    assert [e["event_id"] for e in page["chunk"]] == [root]
    mine = (await eve.get(f"{V1}/rooms/{room}/threads", include="participated")).json()
    assert mine["chunk"] == []
    alices = (await alice.get(f"{V1}/rooms/{room}/threads", include="participated")).json()
    assert [e["event_id"] for e in alices["chunk"]] == [root]

    # Refused: bad params, unknown event, a non-member of a private room.
    assert (await alice.get(f"{V1}/rooms/{room}/threads", include="mine")).status_code == 400
    assert (await relations(alice, room, root, dir="x")).status_code == 400
    assert (await relations(alice, room, root, **{"from": "garbage"})).status_code == 400
    assert (await relations(alice, room, "$unknown")).status_code == 404
    private = await alice.create_room(room_version=version)
    proot = await alice.send(private, "p")
    await alice.send(private, "pr", **rel("m.thread", proot))
    carl = await new_user(client, "carl")
    assert (await relations(carl, private, proot)).status_code == 403
    assert (await carl.get(f"{V1}/rooms/{private}/threads")).status_code == 403
    # A redacted reply no longer counts.
    r = await alice.put(f"{V3}/rooms/{room}/redact/{quote(replies[4], safe='')}/x1", {})
    assert r.status_code == 200
    thread = (await alice.event(room, root)).json()["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 4 and thread["latest_event"]["event_id"] == replies[3]


async def test_relations_respect_history_visibility(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await alice.put(f"{V3}/rooms/{room}/state/m.room.history_visibility", {"history_visibility": "joined"})
    root = await alice.send(room, "early root")
    await alice.send(room, "early reply", **rel("m.thread", root))
    await bob.join(room)
    assert (await relations(bob, room, root)).status_code == 404
    late = await alice.send(room, "late root")
    await alice.send(room, "late reply", **rel("m.thread", late))
    threads = (await bob.get(f"{V1}/rooms/{room}/threads")).json()
    assert [e["event_id"] for e in threads["chunk"]] == [late]


async def test_public_room_directory(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    big = await alice.create_room(visibility="public", name="Big Room", topic="lots of people",
                                  room_alias_name="big")
    small = await alice.create_room(visibility="public", name="small talk")
    space = await alice.create_room(visibility="public", name="A space", creation_content={"type": "m.space"})
    hidden = await alice.create_room(name="hidden")
    await bob.join(big)
    r = await client.get(f"{V3}/publicRooms")  # no token needed
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["room_id"] for e in body["chunk"]][0] == big
    assert {e["room_id"] for e in body["chunk"]} == {big, small, space}
    assert body["total_room_count_estimate"] == 3
    entry = body["chunk"][0]
    assert entry == {
        "room_id": big, "num_joined_members": 2, "world_readable": False, "guest_can_join": False,
        "join_rule": "public", "name": "Big Room", "topic": "lots of people",
        "canonical_alias": "#big:localhost",
    }
    spaces = [e for e in body["chunk"] if e["room_id"] == space]
    assert spaces[0]["room_type"] == "m.space"
    # Paging.
    p1 = (await alice.get(f"{V3}/publicRooms", limit=2)).json()
    assert len(p1["chunk"]) == 2 and "next_batch" in p1
    p2 = (await alice.get(f"{V3}/publicRooms", limit=2, since=p1["next_batch"])).json()
    assert len(p2["chunk"]) == 1 and "prev_batch" in p2 and "next_batch" not in p2
    assert {e["room_id"] for e in p1["chunk"] + p2["chunk"]} == {big, small, space}
    # Search and room types.
    r = await alice.post(f"{V3}/publicRooms", {"filter": {"generic_search_term": "TALK"}})
    assert [e["room_id"] for e in r.json()["chunk"]] == [small]
    r = await alice.post(f"{V3}/publicRooms", {"filter": {"room_types": ["m.space"]}})
    assert [e["room_id"] for e in r.json()["chunk"]] == [space]
    r = await alice.post(f"{V3}/publicRooms", {"filter": {"room_types": [None]}})
    assert {e["room_id"] for e in r.json()["chunk"]} == {big, small}
    r = await alice.post(f"{V3}/publicRooms", {"filter": {"room_types": "m.space"}})
    assert r.status_code == 400
    assert (await client.post(f"{V3}/publicRooms", json={})).status_code == 401
    assert (await alice.get(f"{V3}/publicRooms", since="zzz")).status_code == 400
    # Visibility: read by anyone; set by those with state power only.
    r = await client.get(f"{V3}/directory/list/room/{hidden}")
    assert r.json() == {"visibility": "private"}
    assert (await client.get(f"{V3}/directory/list/room/!nope:localhost")).status_code == 404
    r = await bob.put(f"{V3}/directory/list/room/{big}", {"visibility": "private"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await alice.put(f"{V3}/directory/list/room/{hidden}", {"visibility": "public"})
    assert r.status_code == 200
    r = await alice.put(f"{V3}/directory/list/room/{big}", {"visibility": "private"})
    assert r.status_code == 200
    assert (await alice.put(f"{V3}/directory/list/room/{big}", {"visibility": "open"})).status_code == 400
    ids = {e["room_id"] for e in (await client.get(f"{V3}/publicRooms")).json()["chunk"]}
    assert ids == {small, space, hidden}


@pytest.mark.parametrize(("old", "new"), [("12", "12"), ("10", "11"), ("11", "12"), ("12", "10")])
async def test_room_upgrade(client: httpx.AsyncClient, old: str, new: str) -> None:
    alice, bob, extra = [await new_user(client, n) for n in ("alice", "bob", "extra")]
    room = await alice.create_room(room_version=old, visibility="public", name="Old", topic="t",
                                   room_alias_name="upg", creation_content={"type": "org.example.kind"})
    await bob.join(room)
    await alice.send(room, "before upgrade")
    # bob may not upgrade; unknown versions are refused.
    r = await bob.post(f"{V3}/rooms/{room}/upgrade", {"new_version": new})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await alice.post(f"{V3}/rooms/{room}/upgrade", {"new_version": "99"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    r = await alice.post(f"{V3}/rooms/{room}/upgrade", {"new_version": new, "additional_creators": [extra.user_id]})
    assert r.status_code == 200, r.text
    new_room = r.json()["replacement_room"]
    # The tombstone, and the old room locked down.
    r = await alice.get(f"{V3}/rooms/{room}/state/m.room.tombstone")
    assert r.json()["replacement_room"] == new_room
    pl_old = (await alice.get(f"{V3}/rooms/{room}/state/m.room.power_levels")).json()
    assert pl_old["events_default"] == 50 and pl_old["invite"] == 50
    r = await bob.send_raw(room, {"msgtype": "m.text", "body": "still here?"})
    assert r.status_code == 403
    # The new room: predecessor, version, type, copied state, moved alias and listing.
    create = (await alice.get(f"{V3}/rooms/{new_room}/state/m.room.create")).json()
    assert create["predecessor"]["room_id"] == room and create["room_version"] == new
    assert create["type"] == "org.example.kind"
    if new == "12":
        assert "event_id" not in create["predecessor"]
        assert create["additional_creators"] == [extra.user_id]
    else:
        assert create["predecessor"]["event_id"].startswith("$")
        assert "additional_creators" not in create
    assert (await alice.get(f"{V3}/rooms/{new_room}/state/m.room.name")).json() == {"name": "Old"}
    assert (await alice.get(f"{V3}/rooms/{new_room}/state/m.room.topic")).json() == {"topic": "t"}
    jr = (await alice.get(f"{V3}/rooms/{new_room}/state/m.room.join_rules")).json()
    assert jr["join_rule"] == "public"
    pl_new = (await alice.get(f"{V3}/rooms/{new_room}/state/m.room.power_levels")).json()
    assert pl_new["events_default"] == 0
    if new == "12":
        assert alice.user_id not in pl_new.get("users", {})
    else:
        assert pl_new["users"][alice.user_id] == 100
    alias = (await client.get(f"{V3}/directory/room/{quote('#upg:localhost')}")).json()
    assert alias["room_id"] == new_room
    listed = {e["room_id"] for e in (await client.get(f"{V3}/publicRooms")).json()["chunk"]}
    assert new_room in listed and room not in listed
    # bob follows the tombstone and talks there; history stays in the old room.
    await bob.join(new_room)
    await bob.send(new_room, "new home")
    assert "before upgrade" in bodies(await bob.all_messages(room))
    # Upgrading needs membership.
    carl = await new_user(client, "carl")
    r = await carl.post(f"{V3}/rooms/{new_room}/upgrade", {"new_version": new})
    assert r.status_code == 403
