"""Rooms over real HTTP: create in every version, join, send, idempotent txns, state, members, powers."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


async def two_users(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    return await register(client, "alice"), await register(client, "bob")


@pytest.mark.parametrize("version", [str(n) for n in range(1, 13)])
async def test_every_room_version(client: httpx.AsyncClient, version: str) -> None:
    a, b = await two_users(client)
    ha, hb = auth_header(a["access_token"]), auth_header(b["access_token"])
    r = await client.post(f"{V3}/createRoom", headers=ha, json={
        "room_version": version, "name": "Room", "topic": "t", "invite": [b["user_id"]]})
    assert r.status_code == 200, r.text
    room = r.json()["room_id"]
    r = await client.post(f"{V3}/join/{room}", headers=hb, json={})
    assert r.status_code == 200, r.text
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/1", headers=hb, json={"msgtype": "m.text", "body": "hi"})
    assert r.status_code == 200, r.text
    eid = r.json()["event_id"]
    r = await client.get(f"{V3}/rooms/{room}/event/{quote(eid, safe='')}", headers=ha)
    assert r.status_code == 200 and r.json()["content"]["body"] == "hi"
    r = await client.get(f"{V3}/rooms/{room}/state/m.room.create", headers=ha)
    assert r.json()["room_version"] == version
    r = await client.get(f"{V3}/rooms/{room}/state/m.room.name/", headers=hb)
    assert r.json() == {"name": "Room"}
    r = await client.get(f"{V3}/rooms/{room}/joined_members", headers=ha)
    assert set(r.json()["joined"]) == {a["user_id"], b["user_id"]}


async def test_send_is_idempotent_per_device_and_room(client: httpx.AsyncClient) -> None:
    a, _ = await two_users(client)
    ha = auth_header(a["access_token"])
    r1 = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
    r2 = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
    body = {"msgtype": "m.text", "body": "once"}
    results = await asyncio.gather(*(client.put(f"{V3}/rooms/{r1}/send/m.room.message/tx", headers=ha, json=body)
                                     for _ in range(5)))
    ids = {r.json()["event_id"] for r in results}
    assert len(ids) == 1
    other = await client.put(f"{V3}/rooms/{r2}/send/m.room.message/tx", headers=ha, json=body)
    assert other.json()["event_id"] not in ids
    msgs = (await client.get(f"{V3}/rooms/{r1}/messages", headers=ha, params={"dir": "b", "limit": 50})).json()
    assert [e["event_id"] for e in msgs["chunk"] if e["type"] == "m.room.message"] == list(ids)
    sent = [e for e in msgs["chunk"] if e["type"] == "m.room.message"][0]
    assert sent["unsigned"]["transaction_id"] == "tx"
    # A different device of the same user gets a different event for the same txn id.
    r = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": "correct horse",
                                               "identifier": {"type": "m.id.user", "user": "alice"}})
    h2 = auth_header(r.json()["access_token"])
    r = await client.put(f"{V3}/rooms/{r1}/send/m.room.message/tx", headers=h2, json=body)
    assert r.json()["event_id"] not in ids


async def test_power_levels_and_membership_rules(client: httpx.AsyncClient) -> None:
    a, b = await two_users(client)
    c = await register(client, "carl")
    ha, hb, hc = (auth_header(x["access_token"]) for x in (a, b, c))
    room = (await client.post(f"{V3}/createRoom", headers=ha, json={"preset": "public_chat"})).json()["room_id"]
    assert (await client.post(f"{V3}/join/{room}", headers=hb, json={})).status_code == 200
    # bob (level 0) may not set the name (50) nor kick.
    r = await client.put(f"{V3}/rooms/{room}/state/m.room.name", headers=hb, json={"name": "nope"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await client.post(f"{V3}/rooms/{room}/kick", headers=hb, json={"user_id": a["user_id"]})
    assert r.status_code == 403
    # Non-members cannot send.
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/x", headers=hc, json={"body": "x"})
    assert r.status_code == 403
    # alice kicks, bans, unbans bob.
    r = await client.post(f"{V3}/rooms/{room}/kick", headers=ha, json={"user_id": b["user_id"], "reason": "bye"})
    assert r.status_code == 200, r.text
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/y", headers=hb, json={"body": "x"})
    assert r.status_code == 403
    assert (await client.post(f"{V3}/join/{room}", headers=hb, json={})).status_code == 200
    r = await client.post(f"{V3}/rooms/{room}/ban", headers=ha, json={"user_id": b["user_id"]})
    assert r.status_code == 200
    r = await client.post(f"{V3}/join/{room}", headers=hb, json={})
    assert r.status_code == 403
    r = await client.post(f"{V3}/rooms/{room}/unban", headers=ha, json={"user_id": b["user_id"]})
    assert r.status_code == 200
    assert (await client.post(f"{V3}/join/{room}", headers=hb, json={})).status_code == 200
    # Invite-only: carl cannot join until invited.
    private = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
    assert (await client.post(f"{V3}/join/{private}", headers=hc, json={})).status_code == 403
    r = await client.post(f"{V3}/rooms/{private}/invite", headers=ha, json={"user_id": c["user_id"]})
    assert r.status_code == 200
    assert (await client.post(f"{V3}/rooms/{private}/join", headers=hc, json={})).status_code == 200
    r = await client.get(f"{V3}/joined_rooms", headers=hc)
    assert r.json()["joined_rooms"] == [private]
    # Leave and forget.
    assert (await client.post(f"{V3}/rooms/{private}/forget", headers=hc, json={})).status_code == 400
    assert (await client.post(f"{V3}/rooms/{private}/leave", headers=hc, json={})).status_code == 200
    assert (await client.post(f"{V3}/rooms/{private}/forget", headers=hc, json={})).status_code == 200
    assert (await client.get(f"{V3}/joined_rooms", headers=hc)).json()["joined_rooms"] == []


async def test_bad_room_requests(client: httpx.AsyncClient) -> None:
    a, _ = await two_users(client)
    ha = auth_header(a["access_token"])
    r = await client.post(f"{V3}/createRoom", headers=ha, json={"room_version": "99"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    r = await client.post(f"{V3}/createRoom", headers=ha, json={"invite": "@x:y"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await client.put(f"{V3}/rooms/!nope:localhost/send/m.room.message/1", headers=ha, json={"body": "x"})
    assert r.status_code in (403, 404)
    room = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/big", headers=ha,
                         json={"msgtype": "m.text", "body": "x" * 10_001})
    assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/huge", headers=ha,
                         json={"msgtype": "m.text", "body": "x", "pad": "y" * 70_000})
    assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    r = await client.put(f"{V3}/rooms/{room}/send/m.room.message/float", headers=ha,
                         json={"msgtype": "m.text", "body": "x", "n": 1.5})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    # Nothing of the refused sends was stored.
    msgs = (await client.get(f"{V3}/rooms/{room}/messages", headers=ha, params={"dir": "b", "limit": 100})).json()
    assert not [e for e in msgs["chunk"] if e["type"] == "m.room.message"]


async def test_identical_v12_rooms_created_at_once_get_distinct_ids(client: httpx.AsyncClient) -> None:
    a, _ = await two_users(client)
    ha = auth_header(a["access_token"])
    body = {"room_version": "12", "name": "same", "preset": "private_chat"}
    results = await asyncio.gather(*(client.post(f"{V3}/createRoom", headers=ha, json=body) for _ in range(8)))
    assert [r.status_code for r in results] == [200] * 8, [r.text for r in results]
    ids = {r.json()["room_id"] for r in results}
    assert len(ids) == 8
    joined = (await client.get(f"{V3}/joined_rooms", headers=ha)).json()["joined_rooms"]
    assert ids <= set(joined)
