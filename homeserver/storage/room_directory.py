"""The published room directory: which rooms are public, and what their listing shows."""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database

LISTED_STATE = (
    "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar", "m.room.join_rules",
    "m.room.history_visibility", "m.room.guest_access", "m.room.create",
)


class RoomDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def public_rooms(self) -> list[dict[str, Any]]:
        """Every published room: room_id, joined member count and the content of its listed state."""
        async with self.db.connection() as conn:
            rooms = await conn.fetch(
                "SELECT r.room_id, (SELECT COUNT(*) FROM room_memberships m"
                "  WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined"
                " FROM rooms r WHERE r.is_public"
            )
            state = await conn.fetch(
                "SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e USING (event_id)"
                " JOIN rooms r ON r.room_id = c.room_id"
                " WHERE r.is_public AND c.state_key = '' AND c.type = ANY($1::text[])",
                list(LISTED_STATE),
            )
        out: dict[str, dict[str, Any]] = {
            r["room_id"]: {"room_id": r["room_id"], "joined": r["joined"], "state": {}} for r in rooms
        }
        for s in state:
            content = json.loads(s["json"]).get("content", {})
            out[s["room_id"]]["state"][s["type"]] = content if isinstance(content, dict) else {}
        return list(out.values())

    async def set_public(self, room_id: str, public: bool) -> bool:
        """False if there is no such room."""
        async with self.db.connection() as conn:
            status = await conn.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, public)
        return status != "UPDATE 0"

    async def is_public(self, room_id: str) -> bool | None:
        """None if there is no such room."""
        async with self.db.connection() as conn:
            return await conn.fetchval("SELECT is_public FROM rooms WHERE room_id = $1", room_id)

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> list[str]:
        """Point every local alias of one room at another; returns the aliases moved."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "UPDATE room_aliases SET room_id = $2 WHERE room_id = $1 RETURNING room_alias",
                old_room_id, new_room_id,
            )
        return sorted(r["room_alias"] for r in rows)
