"""Typing, receipts, read markers, presence, account data, tags and filters.

Each writes its stream and then publishes (stream, position, users) on the bus,
so only the affected users' waiting syncs wake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

from homeserver import errors
from homeserver.core.canonical_json import encode_canonical_json
from homeserver.core.sync_filter import FilterError, parse_sync_filter
from homeserver.infra.bus import LocalBus, StreamUpdate
from homeserver.services.auth import Requester
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore
from homeserver.storage.userdata import UserDataStore

SERVER_MANAGED_ACCOUNT_DATA = ("m.fully_read", "m.push_rules")
PRESENCE_STATES = ("online", "unavailable", "offline")
MAX_TYPING_TIMEOUT_MS = 120_000


def now_ms() -> int:
    return int(time.time() * 1000)


class TypingService:
    """Who is typing where. Ephemeral: kept in memory, never in the database."""

    def __init__(self, bus: LocalBus, events: EventStore, rooms: RoomService, start: int = 0) -> None:
        self.bus = bus
        self.events = events
        self.rooms = rooms
        # Not stored: a restart continues from `start` (the start-up time in ms), which is past
        # every position handed out before, so tokens from before a restart stay comparable.
        self.position = start
        self._typing: dict[str, dict[str, float]] = defaultdict(dict)  # room -> user -> expiry (monotonic)
        self._room_pos: dict[str, int] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    async def set_typing(self, requester: Requester, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only set your own typing state")
        await self.rooms.require_member(user_id, room_id)
        key = (room_id, user_id)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        was = user_id in self._typing[room_id]
        if typing:
            timeout_ms = max(0, min(timeout_ms, MAX_TYPING_TIMEOUT_MS))
            self._typing[room_id][user_id] = time.monotonic() + timeout_ms / 1000
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(
                timeout_ms / 1000, lambda: asyncio.ensure_future(self._expire(room_id, user_id))
            )
            if not was:
                await self._changed(room_id)
        elif was:
            del self._typing[room_id][user_id]
            await self._changed(room_id)

    async def _expire(self, room_id: str, user_id: str) -> None:
        self._timers.pop((room_id, user_id), None)
        if self._typing[room_id].pop(user_id, None) is not None:
            await self._changed(room_id)

    async def _changed(self, room_id: str) -> None:
        self.position += 1
        self._room_pos[room_id] = self.position
        users = frozenset(await self.events.joined_and_invited_users(room_id))
        await self.bus.publish(StreamUpdate("typing", self.position, users, frozenset([room_id])))

    def typing_events(self, room_ids: list[str], since: int) -> dict[str, dict[str, Any]]:
        out = {}
        for room_id in room_ids:
            pos = self._room_pos.get(room_id, 0)
            if pos > since or (since == 0 and self._typing.get(room_id)):
                out[room_id] = {"type": "m.typing", "content": {"user_ids": sorted(self._typing.get(room_id, {}))}}
        return out


class ReceiptService:
    def __init__(self, store: UserDataStore, events: EventStore, rooms: RoomService, bus: LocalBus,
                 account_data: AccountDataService) -> None:
        self.store = store
        self.events = events
        self.rooms = rooms
        self.bus = bus
        self.account_data = account_data
        self.on_read: list[Any] = []

    async def post_receipt(
        self, requester: Requester, room_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        if receipt_type not in ("m.read", "m.read.private", "m.fully_read"):
            raise errors.MatrixError(400, "M_INVALID_PARAM", f"Unknown receipt type {receipt_type!r}")
        if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'thread_id' must be a non-empty string")
        await self.rooms.require_member(requester.user_id, room_id)
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id:
            raise errors.not_found("Unknown event")
        if receipt_type == "m.fully_read":
            await self.account_data.put(requester.user_id, room_id, "m.fully_read", {"event_id": event_id},
                                        server_managed=True)
            return
        sid = await self.store.put_receipt(
            room_id, receipt_type, requester.user_id, thread_id or "", event_id, stored.stream_ordering, now_ms()
        )
        if sid is None:
            return
        if receipt_type == "m.read.private":
            users = frozenset([requester.user_id])
        else:
            users = frozenset(await self.events.joined_and_invited_users(room_id))
        await self.bus.publish(StreamUpdate("receipts", sid, users, frozenset([room_id])))
        for hook in self.on_read:
            await hook(requester.user_id, room_id)

    async def read_markers(self, requester: Requester, room_id: str, body: dict[str, Any]) -> None:
        for key in ("m.fully_read", "m.read", "m.read.private"):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise errors.bad_json(f"'{key}' must be an event ID")
            await self.post_receipt(requester, room_id, key, value, None)

    async def receipt_events(self, user_id: str, room_ids: list[str], since: int, upto: int) -> dict[str, dict[str, Any]]:
        rows = await self.store.receipts_for_rooms(room_ids, since, upto)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["receipt_type"] == "m.read.private" and r["user_id"] != user_id:
                continue
            content = out.setdefault(r["room_id"], {"type": "m.receipt", "content": {}})["content"]
            data: dict[str, Any] = {"ts": r["ts"]}
            if r["thread_id"]:
                data["thread_id"] = r["thread_id"]
            content.setdefault(r["event_id"], {}).setdefault(r["receipt_type"], {})[r["user_id"]] = data
        return out


class AccountDataService:
    def __init__(self, store: UserDataStore, bus: LocalBus, rooms: RoomService) -> None:
        self.store = store
        self.bus = bus
        self.rooms = rooms
        self.on_change: list[Any] = []
        # user -> ignored users, read by every sync; dropped (before and after) on each write of the list.
        self._ignored: dict[str, frozenset[str]] = {}
        self._ignored_writes: dict[str, int] = {}

    def _ignored_changed(self, user_id: str) -> None:
        self._ignored.pop(user_id, None)
        self._ignored_writes[user_id] = self._ignored_writes.get(user_id, 0) + 1

    async def put(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any], *, server_managed: bool = False
    ) -> None:
        if not server_managed and data_type in SERVER_MANAGED_ACCOUNT_DATA:
            raise errors.MatrixError(405, "M_BAD_JSON", f"{data_type} is managed by the server")
        if len(encode_canonical_json(content)) > 65536:
            raise errors.too_large("Account data is too large")
        ignored_list = not room_id and data_type == "m.ignored_user_list"
        if ignored_list:
            self._ignored_changed(user_id)
        sid = await self.store.put_account_data(user_id, room_id, data_type, content)
        if ignored_list:
            self._ignored_changed(user_id)
        await self.bus.publish(StreamUpdate("account_data", sid, frozenset([user_id])))
        for hook in self.on_change:
            await hook(user_id, room_id, data_type, content)

    async def put_for(self, requester: Requester, user_id: str, room_id: str, data_type: str,
                      content: dict[str, Any]) -> None:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only change your own account data")
        if room_id:
            await self.rooms.room_version(room_id)
        await self.put(user_id, room_id, data_type, content)

    async def get_for(self, requester: Requester, user_id: str, room_id: str, data_type: str) -> dict[str, Any]:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only read your own account data")
        content = await self.store.get_account_data(user_id, room_id, data_type)
        if content is None:
            raise errors.not_found("Account data not found")
        return content

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        cached = self._ignored.get(user_id)
        if cached is not None:
            return cached
        writes = self._ignored_writes.get(user_id, 0)
        content = await self.store.get_account_data(user_id, "", "m.ignored_user_list")
        if not isinstance(content, dict) or not isinstance(content.get("ignored_users"), dict):
            ignored: frozenset[str] = frozenset()
        else:
            ignored = frozenset(content["ignored_users"])
        if writes == self._ignored_writes.get(user_id, 0):
            if len(self._ignored) >= 100_000:
                self._ignored.clear()
            self._ignored[user_id] = ignored
        return ignored

    # -- tags ----------------------------------------------------------------
    async def tags(self, requester: Requester, user_id: str, room_id: str) -> dict[str, Any]:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only read your own tags")
        content = await self.store.get_account_data(user_id, room_id, "m.tag") or {}
        return {"tags": content.get("tags", {})}

    async def set_tag(self, requester: Requester, user_id: str, room_id: str, tag: str,
                      body: dict[str, Any] | None) -> None:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only change your own tags")
        if len(tag.encode()) > 255:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Tag is too long")
        content = await self.store.get_account_data(user_id, room_id, "m.tag") or {}
        tags = dict(content.get("tags", {}))
        if body is None:
            if tag not in tags:
                return
            del tags[tag]
        else:
            order = body.get("order")
            if order is not None and (not isinstance(order, (int, float)) or isinstance(order, bool)):
                raise errors.bad_json("'order' must be a number")
            tags[tag] = body
        await self.put(user_id, room_id, "m.tag", {"tags": tags}, server_managed=True)


class PresenceService:
    """Presence with coalescing: only real state changes bump the stream."""

    IDLE_AFTER_MS = 5 * 60 * 1000
    OFFLINE_AFTER_MS = 60 * 1000

    def __init__(self, store: UserDataStore, bus: LocalBus, enabled: bool) -> None:
        self.store = store
        self.bus = bus
        self.enabled = enabled
        self._last_sync: dict[str, int] = {}
        self._state: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def set_presence(self, user_id: str, state: str, status_msg: str | None = None,
                           *, keep_status: bool = False) -> None:
        if state not in PRESENCE_STATES:
            raise errors.MatrixError(400, "M_INVALID_PARAM", f"Unknown presence state {state!r}")
        if not self.enabled:
            return
        sid = await self.store.set_presence(user_id, state, status_msg, now_ms(), state == "online",
                                            keep_status=keep_status)
        self._state[user_id] = state
        users = set(await self.store.users_sharing_rooms(user_id))
        users.add(user_id)
        await self.bus.publish(StreamUpdate("presence", sid, frozenset(users)))

    async def put_status(self, requester: Requester, user_id: str, body: dict[str, Any]) -> None:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only set your own presence")
        state = body.get("presence")
        msg = body.get("status_msg")
        if not isinstance(state, str):
            raise errors.bad_json("'presence' is required")
        if msg is not None and not isinstance(msg, str):
            raise errors.bad_json("'status_msg' must be a string")
        await self.set_presence(user_id, state, msg)

    async def get_status(self, requester: Requester, user_id: str) -> dict[str, Any]:
        if requester.user_id != user_id and user_id not in await self.store.users_sharing_rooms(requester.user_id):
            raise errors.forbidden("You do not share a room with this user")
        rows = await self.store.get_presence([user_id])
        if not rows:
            return {"presence": "offline"}
        return _presence_content(rows[0])

    async def on_sync(self, user_id: str, set_presence: str | None) -> None:
        """A sync is activity: mark online unless the client asked otherwise; only changes are written."""
        if not self.enabled:
            return
        self._last_sync[user_id] = now_ms()
        wanted = set_presence or "online"
        if wanted == "offline":
            return
        if self._state.get(user_id) == wanted:
            return
        rows = await self.store.get_presence([user_id])
        current = rows[0]["state"] if rows else None
        self._state[user_id] = current or "offline"
        if current != wanted:
            await self.set_presence(user_id, wanted, keep_status=True)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.ensure_future(self._sweep_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(15)
            cutoff = now_ms() - self.OFFLINE_AFTER_MS
            for user_id, last in list(self._last_sync.items()):
                if last < cutoff and self._state.get(user_id) != "offline":
                    self._last_sync.pop(user_id, None)
                    try:
                        await self.set_presence(user_id, "offline", keep_status=True)
                    except Exception:  # noqa: BLE001 - keep sweeping
                        pass

    async def presence_events(self, user_id: str, since: int, upto: int) -> list[dict[str, Any]]:
        users = set(await self.store.users_sharing_rooms(user_id))
        users.add(user_id)
        rows = await self.store.presence_since(sorted(users), since, upto)
        return [{"type": "m.presence", "sender": r["user_id"], "content": _presence_content(r)} for r in rows]


def _presence_content(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "presence": r["state"],
        "last_active_ago": max(0, now_ms() - r["last_active_ts"]),
        "currently_active": bool(r["currently_active"]) and r["state"] == "online",
    }
    if r["status_msg"] is not None:
        out["status_msg"] = r["status_msg"]
    return out


class FilterService:
    def __init__(self, store: UserDataStore) -> None:
        self.store = store
        self._resolved: dict[tuple[str, str], Any] = {}

    async def create(self, requester: Requester, user_id: str, body: dict[str, Any]) -> str:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only create filters for yourself")
        try:
            parse_sync_filter(body)
        except FilterError as e:
            raise errors.bad_json(f"Invalid filter: {e}") from None
        fid = await self.store.add_filter(user_id, encode_canonical_json(body).decode())
        return str(fid)

    async def get(self, requester: Requester, user_id: str, filter_id: str) -> dict[str, Any]:
        if requester.user_id != user_id:
            raise errors.forbidden("You may only read your own filters")
        if not filter_id.isdigit():
            raise errors.not_found("No such filter")
        raw = await self.store.get_filter(user_id, int(filter_id))
        if raw is None:
            raise errors.not_found("No such filter")
        return json.loads(raw)

    async def resolve(self, user_id: str, param: str | None) -> Any:
        """The sync filter named by `filter=` (an ID or inline JSON).

        Stored filters never change and inline ones are their own text, so parsed
        filters are kept: clients send the same one with every sync.
        """
        key = (user_id, param or "")
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        parsed = await self._resolve(user_id, param)
        if len(self._resolved) >= 10_000:
            self._resolved.clear()
        self._resolved[key] = parsed
        return parsed

    async def _resolve(self, user_id: str, param: str | None) -> Any:
        if not param:
            return parse_sync_filter({})
        if param.lstrip().startswith("{"):
            try:
                body = json.loads(param)
            except ValueError:
                raise errors.MatrixError(400, "M_NOT_JSON", "The inline filter is not JSON") from None
        else:
            if not param.isdigit():
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Unknown filter")
            raw = await self.store.get_filter(user_id, int(param))
            if raw is None:
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Unknown filter")
            body = json.loads(raw)
        try:
            return parse_sync_filter(body)
        except FilterError as e:
            raise errors.bad_json(f"Invalid filter: {e}") from None
