"""The public room directory: /publicRooms and /directory/list/room/{roomId}.

Listing is computed from each published room's current state; it is sorted
by joined members (most first), then room ID, and paged by offset tokens
(`n<offset>` for next_batch, `p<offset>` for prev_batch). The whole list is
read per request: fine for the hundreds of public rooms of one homeserver;
a materialised listing would be the next step beyond that.
"""

from __future__ import annotations

from typing import Any

from homeserver import errors
from homeserver.core.power_levels import get_named_level, get_user_power_level
from homeserver.services.auth import Requester
from homeserver.services.rooms import RoomService
from homeserver.storage.room_directory import RoomDirectoryStore

MAX_LIMIT = 500


def _str(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) else None


def _chunk_entry(row: dict[str, Any]) -> dict[str, Any]:
    state = row["state"]
    entry: dict[str, Any] = {
        "room_id": row["room_id"],
        "num_joined_members": row["joined"],
        "world_readable": _str(state.get("m.room.history_visibility", {}), "history_visibility") == "world_readable",
        "guest_can_join": _str(state.get("m.room.guest_access", {}), "guest_access") == "can_join",
        "join_rule": _str(state.get("m.room.join_rules", {}), "join_rule") or "public",
    }
    for key, (etype, field) in {
        "name": ("m.room.name", "name"),
        "topic": ("m.room.topic", "topic"),
        "canonical_alias": ("m.room.canonical_alias", "alias"),
        "avatar_url": ("m.room.avatar", "url"),
        "room_type": ("m.room.create", "type"),
    }.items():
        value = _str(state.get(etype, {}), field)
        if value:
            entry[key] = value
    return entry


def _matches(entry: dict[str, Any], term: str | None, room_types: list[str | None] | None) -> bool:
    if room_types is not None and entry.get("room_type") not in room_types:
        return False
    if term:
        needle = term.casefold()
        haystack = [entry.get("name"), entry.get("topic"), entry.get("canonical_alias"), entry["room_id"]]
        if not any(isinstance(h, str) and needle in h.casefold() for h in haystack):
            return False
    return True


class RoomDirectoryService:
    def __init__(self, rooms: RoomService, store: RoomDirectoryStore, server_name: str) -> None:
        self.rooms = rooms
        self.store = store
        self.server_name = server_name

    async def public_rooms(
        self,
        *,
        limit: Any = None,
        since: Any = None,
        server: Any = None,
        search_filter: Any = None,
    ) -> dict[str, Any]:
        if server is not None and server != self.server_name:
            raise errors.not_found("Cannot list the rooms of other servers")
        if limit is None:
            limit_n = MAX_LIMIT
        else:
            try:
                limit_n = int(limit)
            except (TypeError, ValueError):
                raise errors.invalid_param("'limit' must be an integer") from None
            if isinstance(limit, bool) or limit_n < 0:
                raise errors.invalid_param("'limit' must be a non-negative integer")
            limit_n = min(limit_n, MAX_LIMIT)
        offset = 0
        if since:
            if not isinstance(since, str) or since[:1] not in ("n", "p") or not since[1:].isdigit():
                raise errors.invalid_param("Invalid 'since' token")
            offset = int(since[1:])
        term: str | None = None
        room_types: list[str | None] | None = None
        if search_filter is not None:
            if not isinstance(search_filter, dict):
                raise errors.bad_json("'filter' must be an object")
            term = search_filter.get("generic_search_term")
            if term is not None and not isinstance(term, str):
                raise errors.bad_json("'generic_search_term' must be a string")
            room_types = search_filter.get("room_types")
            if room_types is not None and (
                not isinstance(room_types, list) or not all(t is None or isinstance(t, str) for t in room_types)
            ):
                raise errors.bad_json("'room_types' must be a list of strings or nulls")
        entries = [_chunk_entry(r) for r in await self.store.public_rooms()]
        total = len(entries)
        entries = [e for e in entries if _matches(e, term, room_types)]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        page = entries[offset:offset + limit_n]
        out: dict[str, Any] = {"chunk": page, "total_room_count_estimate": total}
        if offset + limit_n < len(entries):
            out["next_batch"] = f"n{offset + limit_n}"
        if offset > 0:
            out["prev_batch"] = f"p{max(0, offset - limit_n)}"
        return out

    async def visibility(self, room_id: str) -> dict[str, str]:
        public = await self.store.is_public(room_id)
        if public is None:
            raise errors.not_found("Unknown room")
        return {"visibility": "public" if public else "private"}

    async def set_visibility(self, requester: Requester, room_id: str, visibility: Any) -> None:
        if visibility not in ("public", "private"):
            raise errors.bad_json("'visibility' must be 'public' or 'private'")
        rv = await self.rooms.room_version(room_id)
        if not requester.is_admin:
            state = await self.rooms.auth_state(room_id)
            pl = state.get(("m.room.power_levels", ""))
            need = get_named_level(pl.content if pl else None, "state_default", room_version=rv)
            current = await self.rooms.events.membership_of(room_id, requester.user_id)
            if current is None or current["membership"] != "join" or (
                get_user_power_level(requester.user_id, state, rv) < need
            ):
                raise errors.forbidden("You may not change this room's visibility in the directory")
        await self.store.set_public(room_id, visibility == "public")
