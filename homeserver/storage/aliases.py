"""Room aliases."""

from __future__ import annotations

import asyncpg

from homeserver.storage.database import Database


class AliasStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_alias(self, alias: str, room_id: str, creator: str, conn: asyncpg.Connection | None = None) -> bool:
        """False if the alias is taken."""
        sql = "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        if conn is None:
            async with self.db.connection() as c:
                status = await c.execute(sql, alias, room_id, creator)
        else:
            status = await conn.execute(sql, alias, room_id, creator)
        return status.endswith(" 1")

    async def get_alias(self, alias: str) -> asyncpg.Record | None:
        async with self.db.connection() as conn:
            return await conn.fetchrow("SELECT room_id, creator FROM room_aliases WHERE room_alias = $1", alias)

    async def delete_alias(self, alias: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM room_aliases WHERE room_alias = $1", alias)

    async def aliases_for_room(self, room_id: str) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch("SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias", room_id)
        return [r["room_alias"] for r in rows]
