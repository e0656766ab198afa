"""History over real HTTP: a private room's life, 500-message pagination, /context, filters,
edits and redactions as every read path serves them, history visibility."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.integration.rooms_helpers import V3, User, bodies, new_user


async def send_many(user: User, room: str, n: int, tasks: int = 8) -> list[str]:
    """Send `n` numbered messages from a few concurrent tasks; returns the acknowledged event IDs."""
    counter = iter(range(n))
    acked: list[str] = []

    async def worker() -> None:
        for i in counter:
            acked.append(await user.send(room, f"m{i}"))

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return acked


async def test_private_room_life_and_pagination(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room = await alice.create_room(name="private")
    assert (await alice.invite(room, bob.user_id)).status_code == 200
    await bob.join(room)
    await alice.send(room, "hello bob")
    await bob.send(room, "hello alice")
    assert bodies((await bob.messages(room, limit=5))["chunk"])[:2] == ["hello alice", "hello bob"]

    acked = await send_many(alice, room, 500)
    assert len(set(acked)) == 500
    backwards = await bob.all_messages(room, "b", page=37)
    forwards = await bob.all_messages(room, "f", page=41)
    ids_b = [e["event_id"] for e in backwards]
    ids_f = [e["event_id"] for e in forwards]
    assert len(ids_b) == len(set(ids_b)), "duplicate going backwards"
    assert ids_f == list(reversed(ids_b)), "the two directions disagree"
    assert set(acked) <= set(ids_b), "an acknowledged event is missing"
    # One linear order: stream order as the server assigned it == the timeline order.
    assert [e["origin_server_ts"] for e in forwards] == sorted(e["origin_server_ts"] for e in forwards)

    # start/end tokens continue each other exactly: end of one page is from of the next.
    first = await bob.messages(room, limit=10)
    second = await bob.messages(room, limit=10, **{"from": first["end"]})
    back = await bob.messages(room, limit=10, dir="f", **{"from": second["end"]})
    assert [e["event_id"] for e in back["chunk"]][:10] == list(reversed([e["event_id"] for e in second["chunk"]]))[1:] + [first["chunk"][-1]["event_id"]]


async def test_context(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat", name="ctx")
    ids = [await alice.send(room, f"c{i}") for i in range(20)]
    r = await alice.context(room, ids[10], limit=6)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["event"]["event_id"] == ids[10]
    assert [e["event_id"] for e in body["events_before"]] == [ids[9], ids[8], ids[7]]
    assert [e["event_id"] for e in body["events_after"]] == [ids[11], ids[12], ids[13]]
    assert {(e["type"], e.get("state_key")) for e in body["state"]} >= {
        ("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)}
    # start/end continue in /messages without gaps.
    older = await alice.messages(room, dir="b", limit=2, **{"from": body["start"]})
    assert [e["event_id"] for e in older["chunk"]] == [ids[6], ids[5]]
    newer = await alice.messages(room, dir="f", limit=2, **{"from": body["end"]})
    assert [e["event_id"] for e in newer["chunk"]] == [ids[14], ids[15]]
    # A filter applies to the surrounding events; lazy loading trims member state.
    await bob.join(room)
    b1 = await bob.send(room, "from bob")
    r = await alice.context(room, b1, limit=4, filter={"senders": [alice.user_id], "lazy_load_members": True})
    body = r.json()
    assert all(e["sender"] == alice.user_id for e in body["events_before"])
    members = {e["state_key"] for e in body["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    # Unknown event, bad filter, non-member.
    r = await alice.context(room, "$nope")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = await alice.context(room, ids[0], filter="{bad")
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await alice.context(room, ids[0], filter={"types": "m.room.message"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    carl = await new_user(client, "carl")
    private = await alice.create_room()
    pid = await alice.send(private, "secret")
    r = await carl.context(private, pid)
    assert r.status_code == 403


async def test_messages_filter(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    for i in range(30):
        await (alice if i % 3 else bob).send(room, f"f{i}")
        if i % 10 == 0:
            await alice.send(room, type="org.example.custom", value=i)
    await alice.send(room, "file", url="mxc://localhost/abc", msgtype="m.file")
    page = await alice.messages(room, limit=5, filter={"senders": [bob.user_id]})
    assert len(page["chunk"]) == 5 and all(e["sender"] == bob.user_id for e in page["chunk"])
    # Paging through a filtered timeline sees every bob message once.
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3, "filter": {"senders": [bob.user_id], "types": ["m.room.message"]}}
    while True:
        body = await alice.messages(room, **params)
        seen += bodies(body["chunk"])
        if "end" not in body:
            break
        params["from"] = body["end"]
    assert seen == [f"f{i}" for i in reversed(range(30)) if i % 3 == 0]
    custom = await alice.messages(room, limit=50, filter={"types": ["org.example.*"]})
    assert [e["content"]["value"] for e in custom["chunk"]] == [20, 10, 0]
    not_msgs = await alice.messages(room, limit=100, filter={"not_types": ["m.room.message", "org.*"]})
    assert all(e["type"].startswith("m.room.") and e["type"] != "m.room.message" for e in not_msgs["chunk"])
    urls = await alice.messages(room, limit=100, filter={"contains_url": True})
    assert bodies(urls["chunk"]) == ["file"]
    lazy = await alice.messages(room, limit=4, filter={"senders": [bob.user_id], "lazy_load_members": True})
    assert [(e["type"], e["state_key"]) for e in lazy["state"]] == [("m.room.member", bob.user_id)]
    not_bob = await alice.messages(room, limit=100, filter={"not_senders": [bob.user_id]})
    assert all(e["sender"] != bob.user_id for e in not_bob["chunk"])
    r = await alice.get(f"{V3}/rooms/{room}/messages", filter="[1]")
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await alice.get(f"{V3}/rooms/{room}/messages", filter="nope")
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"


async def test_edit_is_bundled_and_redaction_strips_everywhere(client: httpx.AsyncClient) -> None:
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room = await alice.create_room(preset="public_chat")
    await bob.join(room)
    orig = await alice.send(room, "typo")
    edit1 = await alice.send(room, "* fixed", **{
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": orig}})
    edit2 = await alice.send(room, "* fixed again", **{
        "m.new_content": {"msgtype": "m.text", "body": "fixed again"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": orig}})
    # Invalid edits: another sender; no m.new_content.
    await bob.send(room, "* hijack", **{
        "m.new_content": {"msgtype": "m.text", "body": "hijack"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": orig}})
    await alice.send(room, "* no new content", **{"m.relates_to": {"rel_type": "m.replace", "event_id": orig}})

    def check_edit(ev: dict[str, Any]) -> None:
        assert ev["content"]["body"] == "typo", "the server must not replace content"
        bundled = ev["unsigned"]["m.relations"]["m.replace"]
        assert bundled["event_id"] == edit2
        assert bundled["content"]["m.new_content"]["body"] == "fixed again"

    check_edit((await bob.event(room, orig)).json())
    msgs = await bob.messages(room, limit=20)
    check_edit(next(e for e in msgs["chunk"] if e["event_id"] == orig))
    check_edit((await bob.context(room, orig)).json()["event"])
    # Redacting the latest edit falls back to the previous one.
    r = await alice.put(f"{V3}/rooms/{room}/redact/{edit2}/r1", {"reason": "oops"})
    assert r.status_code == 200, r.text
    ev = (await bob.event(room, orig)).json()
    assert ev["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit1

    # Redact the original: content stripped on every read path, redacted_because present, no edit bundled.
    r = await alice.put(f"{V3}/rooms/{room}/redact/{orig}/r2", {"reason": "gone"})
    assert r.status_code == 200
    redaction_id = r.json()["event_id"]

    def check_redacted(ev: dict[str, Any]) -> None:
        assert ev["content"] == {}
        assert ev["unsigned"]["redacted_because"]["event_id"] == redaction_id
        assert ev["unsigned"]["redacted_because"]["content"]["reason"] == "gone"
        assert "m.replace" not in ev["unsigned"].get("m.relations", {})

    check_redacted((await bob.event(room, orig)).json())
    msgs = await bob.messages(room, limit=20)
    check_redacted(next(e for e in msgs["chunk"] if e["event_id"] == orig))
    ctx = (await bob.context(room, edit1, limit=10)).json()
    check_redacted(next(e for e in ctx["events_before"] if e["event_id"] == orig))
    check_redacted((await bob.context(room, orig)).json()["event"])
    # bob (power 0) may not redact alice's message.
    other = await alice.send(room, "keep")
    r = await bob.put(f"{V3}/rooms/{room}/redact/{other}/r3", {})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"


async def _late_joiner_sees(client: httpx.AsyncClient, visibility: str, invite_first: bool) -> list[str]:
    alice = await new_user(client, f"a{visibility}{invite_first}")
    bob = await new_user(client, f"b{visibility}{invite_first}")
    room = await alice.create_room(preset="public_chat")
    r = await alice.put(f"{V3}/rooms/{room}/state/m.room.history_visibility", {"history_visibility": visibility})
    assert r.status_code == 200
    await alice.send(room, "before invite")
    if invite_first:
        assert (await alice.invite(room, bob.user_id)).status_code == 200
        await alice.send(room, "while invited")
    await bob.join(room)
    await alice.send(room, "after join")
    seen = bodies(await bob.all_messages(room))
    # /event and /context agree with /messages.
    first = (await alice.messages(room, limit=100))["chunk"]
    early = next(e for e in first if e.get("content", {}).get("body") == "before invite")
    r = await bob.event(room, early["event_id"])
    assert (r.status_code == 200) == ("before invite" in seen)
    r = await bob.context(room, early["event_id"])
    assert (r.status_code == 200) == ("before invite" in seen)
    return list(reversed(seen))


async def test_history_visibility(client: httpx.AsyncClient) -> None:
    assert await _late_joiner_sees(client, "joined", False) == ["after join"]
    assert await _late_joiner_sees(client, "joined", True) == ["after join"]
    assert await _late_joiner_sees(client, "shared", False) == ["before invite", "after join"]
    assert await _late_joiner_sees(client, "invited", True) == ["while invited", "after join"]
    assert await _late_joiner_sees(client, "invited", False) == ["after join"]
