"""Contact requests are direct-message invites, limited per user per day (spec/contacts.md).

These run with the default configuration: no rate-limit overrides.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"
DAILY = 50  # rate_limits.invites_per_user.burst by default


async def login(client: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    r = await register(client, name)
    return r["user_id"], auth_header(r["access_token"])


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0


async def test_51st_dm_request_through_create_room(server_factory: Any) -> None:
    srv = await server_factory({})
    async with srv.client() as client:
        _, ha = await login(client, "alice")
        bob, hb = await login(client, "bob")
        rooms = []
        for _ in range(DAILY):
            r = await client.post(f"{V3}/createRoom", headers=ha, json={
                "preset": "trusted_private_chat", "is_direct": True, "invite": [bob]})
            assert r.status_code == 200, r.text
            rooms.append(r.json()["room_id"])
        r = await client.post(f"{V3}/createRoom", headers=ha, json={"is_direct": True, "invite": [bob]})
        assert_limited(r)
        # Accepting a request is joining the DM; the invite carried is_direct.
        r = await client.get(f"{V3}/rooms/{rooms[0]}/state/m.room.member/{bob}", headers=ha)
        assert r.json() == {"membership": "invite", "is_direct": True}
        r = await client.post(f"{V3}/join/{rooms[0]}", headers=hb, json={})
        assert r.status_code == 200
        assert rooms[0] in (await client.get(f"{V3}/joined_rooms", headers=hb)).json()["joined_rooms"]
        # A room without invitees is not a request and is not limited.
        r = await client.post(f"{V3}/createRoom", headers=ha, json={})
        assert r.status_code == 200


async def test_51st_request_through_invite(server_factory: Any) -> None:
    srv = await server_factory({})
    async with srv.client() as client:
        _, ha = await login(client, "alice")
        bob, _ = await login(client, "bob")
        rooms = []
        for _ in range(DAILY + 1):
            r = await client.post(f"{V3}/createRoom", headers=ha, json={"is_direct": True})
            assert r.status_code == 200, r.text
            rooms.append(r.json()["room_id"])
        for room in rooms[:DAILY]:
            r = await client.post(f"{V3}/rooms/{room}/invite", headers=ha, json={"user_id": bob})
            assert r.status_code == 200, r.text
        r = await client.post(f"{V3}/rooms/{rooms[DAILY]}/invite", headers=ha, json={"user_id": bob})
        assert_limited(r)
        r = await client.get(f"{V3}/rooms/{rooms[DAILY]}/state/m.room.member/{bob}", headers=ha)
        assert r.status_code == 404


async def test_both_paths_share_one_budget_counting_each_invitee(server_factory: Any) -> None:
    srv = await server_factory({})
    async with srv.client() as client:
        _, ha = await login(client, "alice")
        bob, _ = await login(client, "bob")
        carol, _ = await login(client, "carol")
        # One request with 51 invitees is 51 requests.
        many = [f"@u{i}:localhost" for i in range(DAILY + 1)]
        assert_limited(await client.post(f"{V3}/createRoom", headers=ha, json={"invite": many}))
        for _ in range(DAILY // 2 - 1):  # 24 rooms x 2 invitees = 48
            r = await client.post(f"{V3}/createRoom", headers=ha, json={"invite": [bob, carol]})
            assert r.status_code == 200, r.text
        room = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
        other = (await client.post(f"{V3}/createRoom", headers=ha, json={})).json()["room_id"]
        assert (await client.post(f"{V3}/rooms/{room}/invite", headers=ha, json={"user_id": bob})).status_code == 200
        assert (await client.post(f"{V3}/rooms/{other}/invite", headers=ha, json={"user_id": carol})).status_code == 200
        assert_limited(await client.post(f"{V3}/createRoom", headers=ha, json={"is_direct": True, "invite": [bob]}))
        assert_limited(await client.post(f"{V3}/rooms/{other}/invite", headers=ha, json={"user_id": bob}))
