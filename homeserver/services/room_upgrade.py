"""Room upgrades: POST /rooms/{roomId}/upgrade (CS API § Room upgrades, server behaviour).

1. the upgrader must be joined and able to send m.room.tombstone;
2. a new room is created (through RoomService.create_room) whose create event
   has `predecessor` ({room_id}, plus event_id below v12), the old room's
   `type`, and `additional_creators` when the new version has them;
3. the recommended state is copied (power levels adjusted to the new
   version: creators of a v12 room may not be listed in `users`, creators of
   an old v12 room get 100 in a lower version, levels become integers);
4. local aliases move to the new room, so does the directory listing;
5. the tombstone goes into the old room;
6. the old room's power levels are raised so that only moderators can still
   talk or invite (events_default and invite to max(50, users_default + 1)).

Steps 4-6 are best effort once the new room exists, as in Synapse: a
failure there is logged, not undone.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver import errors
from homeserver.core.identifiers import is_valid_user_id
from homeserver.core.power_levels import (
    get_creators,
    get_required_level_for_event,
    get_user_power_level,
    parse_power_level,
)
from homeserver.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.services.auth import Requester
from homeserver.services.rooms import RoomService
from homeserver.storage.room_directory import RoomDirectoryStore

log = logging.getLogger(__name__)

TRANSFERRED_STATE = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
    "m.room.canonical_alias",
)
_LEVEL_KEYS = ("ban", "kick", "redact", "invite", "events_default", "state_default", "users_default", "historical")
_LEVEL_MAPS = ("events", "users", "notifications")


def normalise_power_levels(content: dict[str, Any]) -> dict[str, Any]:
    """Power-level content with every level an integer (what rooms v10+ require); invalid entries dropped."""
    out = {k: v for k, v in content.items() if k not in _LEVEL_KEYS and k not in _LEVEL_MAPS}
    for key in _LEVEL_KEYS:
        if key in content:
            level = parse_power_level(content[key])
            if level is not None:
                out[key] = level
    for key in _LEVEL_MAPS:
        value = content.get(key)
        if isinstance(value, dict):
            levels = {k: parse_power_level(v) for k, v in value.items()}
            out[key] = {k: v for k, v in levels.items() if v is not None}
    return out


class RoomUpgradeService:
    def __init__(self, rooms: RoomService, directory: RoomDirectoryStore) -> None:
        self.rooms = rooms
        self.events = rooms.events
        self.directory = directory

    async def upgrade(self, requester: Requester, room_id: str, body: dict[str, Any]) -> str:
        version = body.get("new_version")
        if not isinstance(version, str):
            raise errors.bad_json("'new_version' must be a string")
        new_rv = KNOWN_ROOM_VERSIONS.get(version)
        if new_rv is None:
            raise errors.MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version!r}")
        extra_creators = body.get("additional_creators", [])
        if not isinstance(extra_creators, list) or not all(
            isinstance(u, str) and is_valid_user_id(u) for u in extra_creators
        ):
            raise errors.bad_json("'additional_creators' must be a list of user IDs")
        old_rv = await self.rooms.room_version(room_id)
        user_id = requester.user_id
        current = await self.events.membership_of(room_id, user_id)
        if current is None or current["membership"] != "join":
            raise errors.forbidden("You are not in this room")

        state_ids = await self.events.current_state_ids(room_id)
        stored = await self.events.get_events(state_ids.values())
        state = {k: stored[v].event for k, v in state_ids.items() if v in stored}
        pl_event = state.get(("m.room.power_levels", ""))
        old_pl = dict(pl_event.content) if pl_event else {}
        level = get_user_power_level(user_id, state, old_rv)
        needed = get_required_level_for_event("m.room.tombstone", True, old_pl or None, room_version=old_rv)
        if level < needed:
            raise errors.forbidden("You may not upgrade this room (m.room.tombstone needs more power)")

        creation_content: dict[str, Any] = {"predecessor": {"room_id": room_id}}
        if not new_rv.room_id_from_create_event:
            last = await self.events.latest_room_events(room_id, await self.events.max_stream_ordering(), 1)
            if last:
                creation_content["predecessor"]["event_id"] = last[-1].event_id
        old_create = state.get(("m.room.create", ""))
        if old_create is not None and isinstance(old_create.content.get("type"), str):
            creation_content["type"] = old_create.content["type"]
        new_creators = {user_id}
        if new_rv.privileged_creators:
            extra = [u for u in dict.fromkeys(extra_creators) if u != user_id]
            if extra:
                creation_content["additional_creators"] = extra
            new_creators.update(extra)

        pl = self._new_power_levels(old_pl, old_rv, new_rv, state, new_creators)
        initial_state = [
            {"type": t, "state_key": "", "content": dict(state[(t, "")].content)}
            for t in TRANSFERRED_STATE
            if (t, "") in state and state[(t, "")].content
        ]
        # The upgrader must be able to send everything copied; raise them for the copy if needed.
        restore_pl = None
        if not new_rv.privileged_creators:
            types = [s["type"] for s in initial_state] + [
                "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.power_levels",
            ]
            need = max(get_required_level_for_event(t, True, pl, room_version=new_rv) for t in types)
            users = pl.setdefault("users", {})
            if users.get(user_id, pl.get("users_default", 0)) < need:
                restore_pl = {**pl, "users": dict(users)}
                users[user_id] = need
        created = await self.rooms.create_room(requester, {
            "room_version": new_rv.identifier,
            "preset": "private_chat",
            "creation_content": creation_content,
            "power_level_content_override": pl,
            "initial_state": initial_state,
        })
        new_room = created["room_id"]
        if restore_pl is not None:
            await self.rooms.send_event(user_id, new_room, type="m.room.power_levels", content=restore_pl, state_key="")

        await self._best_effort(self._move_directory_entry(room_id, new_room), "move aliases/listing")
        await self.rooms.send_event(
            user_id, room_id, type="m.room.tombstone", state_key="",
            content={"body": "This room has been replaced", "replacement_room": new_room},
        )
        await self._best_effort(self._restrict_old_room(user_id, room_id, old_pl), "restrict old room")
        return new_room

    @staticmethod
    async def _best_effort(coro: Any, what: str) -> None:
        try:
            await coro
        except errors.MatrixError as e:
            log.warning("room upgrade: could not %s: %s", what, e.error)

    def _new_power_levels(
        self,
        old_pl: dict[str, Any],
        old_rv: RoomVersion,
        new_rv: RoomVersion,
        state: dict[tuple[str, str], Any],
        new_creators: set[str],
    ) -> dict[str, Any]:
        pl = normalise_power_levels(old_pl)
        users = dict(pl.get("users", {}))
        if old_rv.privileged_creators and not new_rv.privileged_creators:
            # The old room's creators had unlimited power; in the new room they need a number.
            for creator in get_creators(state.get(("m.room.create", "")), old_rv):
                users[creator] = max(users.get(creator, 0), 100)
        if new_rv.privileged_creators:
            for creator in new_creators:
                users.pop(creator, None)
        pl["users"] = users
        return pl

    async def _move_directory_entry(self, old_room: str, new_room: str) -> None:
        await self.directory.move_aliases(old_room, new_room)
        if await self.directory.is_public(old_room):
            await self.directory.set_public(new_room, True)
            await self.directory.set_public(old_room, False)

    async def _restrict_old_room(self, user_id: str, room_id: str, old_pl: dict[str, Any]) -> None:
        users_default = parse_power_level(old_pl.get("users_default", 0)) or 0
        restricted = max(50, users_default + 1)
        pl = dict(old_pl)
        changed = False
        for key in ("events_default", "invite"):
            current = parse_power_level(pl.get(key, 0))
            if current is None or current < restricted:
                pl[key] = restricted
                changed = True
        if changed:
            await self.rooms.send_event(user_id, room_id, type="m.room.power_levels", content=pl, state_key="")
