"""Small helpers for room tests: users, rooms, sends, paging, all over the real client API."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import auth_header, register

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
_txn = itertools.count()


class User:
    def __init__(self, client: httpx.AsyncClient, login: dict[str, Any]) -> None:
        self.client = client
        self.user_id: str = login["user_id"]
        self.token: str = login["access_token"]
        self.h = auth_header(self.token)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.h, params=params or None)

    async def post(self, path: str, body: Any | None = None) -> httpx.Response:
        return await self.client.post(path, headers=self.h, json=body if body is not None else {})

    async def put(self, path: str, body: Any) -> httpx.Response:
        return await self.client.put(path, headers=self.h, json=body)

    async def create_room(self, **body: Any) -> str:
        r = await self.post(f"{V3}/createRoom", body)
        assert r.status_code == 200, r.text
        return r.json()["room_id"]

    async def join(self, room: str) -> None:
        r = await self.post(f"{V3}/join/{room}")
        assert r.status_code == 200, r.text

    async def invite(self, room: str, user_id: str) -> httpx.Response:
        return await self.post(f"{V3}/rooms/{room}/invite", {"user_id": user_id})

    async def send_raw(self, room: str, content: dict[str, Any], type: str = "m.room.message") -> httpx.Response:
        return await self.put(f"{V3}/rooms/{room}/send/{type}/t{next(_txn)}", content)

    async def send(self, room: str, body: str = "", type: str = "m.room.message", **content: Any) -> str:
        c = {"msgtype": "m.text", "body": body, **content} if type == "m.room.message" else content
        r = await self.send_raw(room, c, type)
        assert r.status_code == 200, r.text
        return r.json()["event_id"]

    async def event(self, room: str, event_id: str) -> httpx.Response:
        return await self.get(f"{V3}/rooms/{room}/event/{quote(event_id, safe='')}")

    async def messages(self, room: str, **params: Any) -> dict[str, Any]:
        if "filter" in params and not isinstance(params["filter"], str):
            params["filter"] = json.dumps(params["filter"])
        r = await self.get(f"{V3}/rooms/{room}/messages", **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def context(self, room: str, event_id: str, **params: Any) -> httpx.Response:
        if "filter" in params and not isinstance(params["filter"], str):
            params["filter"] = json.dumps(params["filter"])
        return await self.get(f"{V3}/rooms/{room}/context/{quote(event_id, safe='')}", **params)

    async def all_messages(self, room: str, direction: str = "b", page: int = 50) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"dir": direction, "limit": page}
        if direction == "f":
            params["from"] = "t0-0"
        while True:
            body = await self.messages(room, **params)
            out.extend(body["chunk"])
            if "end" not in body:
                return out
            params["from"] = body["end"]


async def new_user(client: httpx.AsyncClient, name: str) -> User:
    return User(client, await register(client, name))


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
