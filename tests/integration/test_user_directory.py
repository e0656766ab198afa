"""The user directory over real HTTP: who is visible, matching and ranking, staying current."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


async def user(client: httpx.AsyncClient, name: str, displayname: str | None = None) -> dict[str, Any]:
    login = await register(client, name)
    h = auth_header(login["access_token"])
    if displayname is not None:
        r = await client.put(f"{V3}/profile/{login['user_id']}/displayname", headers=h, json={"displayname": displayname})
        assert r.status_code == 200, r.text
    return {"user_id": login["user_id"], "h": h}


async def find(client: httpx.AsyncClient, who: dict[str, Any], term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    r = await client.post(f"{V3}/user_directory/search", headers=who["h"], json=body)
    assert r.status_code == 200, r.text
    return r.json()


def found(res: dict[str, Any]) -> list[str]:
    return [u["user_id"] for u in res["results"]]


async def share_room(client: httpx.AsyncClient, a: dict[str, Any], b: dict[str, Any], **extra: Any) -> str:
    r = await client.post(f"{V3}/createRoom", headers=a["h"], json={"invite": [b["user_id"]], **extra})
    room = r.json()["room_id"]
    r = await client.post(f"{V3}/join/{room}", headers=b["h"], json={})
    assert r.status_code == 200, r.text
    return room


async def test_finds_room_mates_not_strangers(client: httpx.AsyncClient) -> None:
    alice = await user(client, "alice", "Alice Liddell")
    bob = await user(client, "bob", "Bobby Tables")
    stranger = await user(client, "bobcat", "Bobcat Stranger")
    await share_room(client, alice, bob)
    res = await find(client, alice, "bobby")
    assert found(res) == [bob["user_id"]] and res["limited"] is False
    assert res["results"][0]["display_name"] == "Bobby Tables"
    # By localpart, by full user ID, by a later word, case-insensitively.
    assert found(await find(client, alice, "BOB")) == [bob["user_id"]]
    assert found(await find(client, alice, bob["user_id"])) == [bob["user_id"]]
    assert found(await find(client, alice, "tables")) == [bob["user_id"]]
    assert found(await find(client, alice, "stranger")) == []
    assert stranger["user_id"] not in found(await find(client, alice, "bobcat"))


async def test_display_name_change_is_reflected(client: httpx.AsyncClient) -> None:
    alice = await user(client, "alice")
    bob = await user(client, "bob", "Robert")
    await share_room(client, alice, bob)
    assert found(await find(client, alice, "robert")) == [bob["user_id"]]
    r = await client.put(f"{V3}/profile/{bob['user_id']}/displayname", headers=bob["h"], json={"displayname": "Zebedee"})
    assert r.status_code == 200
    assert found(await find(client, alice, "robert")) == []
    res = await find(client, alice, "zebe")
    assert found(res) == [bob["user_id"]] and res["results"][0]["display_name"] == "Zebedee"


async def test_users_in_public_rooms_are_found(client: httpx.AsyncClient) -> None:
    alice = await user(client, "alice")
    pub = await user(client, "publius", "Publius")
    await user(client, "privatus", "Privatus")
    r = await client.post(f"{V3}/createRoom", headers=pub["h"], json={"preset": "public_chat"})
    assert r.status_code == 200
    assert found(await find(client, alice, "publius")) == [pub["user_id"]]
    assert found(await find(client, alice, "privatus")) == []


async def test_search_all_users_switch(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "user_directory.search_all_users": True})
    async with srv.client() as client:
        alice = await user(client, "alice")
        lonely = await user(client, "lonely", "Lonely Larry")
        assert found(await find(client, alice, "larry")) == [lonely["user_id"]]
        # Deactivated users are never listed.
        r = await client.post(f"{V3}/account/deactivate", headers=lonely["h"], json={
            "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "lonely"},
                     "password": "correct horse"}})
        assert r.status_code == 200, r.text
        assert found(await find(client, alice, "lonely")) == []


async def test_ranking_and_limit(client: httpx.AsyncClient) -> None:
    alice = await user(client, "alice")
    names = {"ann": "Ann", "annabel": "Annabel", "joanna": "Joanna", "mary": "Mary Ann Evans", "zed": "Zed"}
    ids = {}
    for local, dn in names.items():
        u = await user(client, local, dn)
        ids[local] = u["user_id"]
        await share_room(client, alice, u)
    res = await find(client, alice, "ann")
    # exact, prefix, later-word prefix, substring.
    assert found(res) == [ids["ann"], ids["annabel"], ids["mary"], ids["joanna"]]
    res = await find(client, alice, "ann", limit=2)
    assert found(res) == [ids["ann"], ids["annabel"]] and res["limited"] is True
    assert (await find(client, alice, "%"))["results"] == []


async def test_bad_bodies(client: httpx.AsyncClient) -> None:
    alice = await user(client, "alice")
    for body in ({}, {"search_term": 3}, {"search_term": "a", "limit": "ten"}, {"search_term": "a", "limit": -1}):
        r = await client.post(f"{V3}/user_directory/search", headers=alice["h"], json=body)
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", r.text
