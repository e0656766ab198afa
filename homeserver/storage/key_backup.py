"""Server-side key backup: backup versions and the encrypted room keys stored in them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from homeserver.storage.database import Database


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def lock_user(self, conn: asyncpg.Connection, user_id: str) -> None:
        """Serialise backup changes of one user (until commit): version creation, key writes."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('backup:' || $1, 0))", user_id)

    async def create_version(self, conn: asyncpg.Connection, user_id: str, algorithm: str, auth_data: Any) -> int:
        return await conn.fetchval(
            "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data)"
            " SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM e2e_room_keys_versions WHERE user_id = $1"
            " RETURNING version",
            user_id, algorithm, json.dumps(auth_data),
        )

    async def current_version(self, user_id: str, conn: asyncpg.Connection | None = None) -> int | None:
        sql = "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = $1 AND NOT deleted"
        if conn is None:
            async with self.db.connection() as c:
                return await c.fetchval(sql, user_id)
        return await conn.fetchval(sql, user_id)

    async def get_version(
        self, user_id: str, version: int, conn: asyncpg.Connection | None = None
    ) -> dict[str, Any] | None:
        """The version's info with its key count, or None (also for a deleted version)."""
        sql = (
            "SELECT v.version, v.algorithm, v.auth_data, v.etag,"
            "  (SELECT COUNT(*) FROM e2e_room_keys k WHERE k.user_id = v.user_id AND k.version = v.version) AS count"
            " FROM e2e_room_keys_versions v WHERE v.user_id = $1 AND v.version = $2 AND NOT v.deleted"
        )
        if conn is None:
            async with self.db.connection() as c:
                row = await c.fetchrow(sql, user_id, version)
        else:
            row = await conn.fetchrow(sql, user_id, version)
        if row is None:
            return None
        return {
            "version": row["version"], "algorithm": row["algorithm"], "auth_data": json.loads(row["auth_data"]),
            "etag": row["etag"], "count": row["count"],
        }

    async def version_ever_existed(self, user_id: str, version: int) -> bool:
        async with self.db.connection() as conn:
            return bool(await conn.fetchval(
                "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2", user_id, version
            ))

    async def update_auth_data(self, conn: asyncpg.Connection, user_id: str, version: int, auth_data: Any) -> None:
        await conn.execute(
            "UPDATE e2e_room_keys_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
            user_id, version, json.dumps(auth_data),
        )

    async def delete_version(self, conn: asyncpg.Connection, user_id: str, version: int) -> None:
        await conn.execute("DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version)
        await conn.execute(
            "UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2", user_id, version
        )

    async def bump_etag(self, conn: asyncpg.Connection, user_id: str, version: int) -> int:
        return await conn.fetchval(
            "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag",
            user_id, version,
        )

    async def get_sessions_for_update(
        self, conn: asyncpg.Connection, user_id: str, version: int, room_ids: list[str], session_ids: list[str]
    ) -> dict[tuple[str, str], asyncpg.Record]:
        rows = await conn.fetch(
            "SELECT k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified"
            " FROM e2e_room_keys k JOIN unnest($3::text[], $4::text[]) AS w(r, s)"
            "   ON k.room_id = w.r AND k.session_id = w.s"
            " WHERE k.user_id = $1 AND k.version = $2 FOR UPDATE OF k",
            user_id, version, room_ids, session_ids,
        )
        return {(r["room_id"], r["session_id"]): r for r in rows}

    async def put_sessions(
        self, conn: asyncpg.Connection, user_id: str, version: int, rows: list[tuple[str, str, int, int, bool, Any]]
    ) -> None:
        """rows: (room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)."""
        await conn.executemany(
            "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
            "  forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
            "  first_message_index = EXCLUDED.first_message_index, forwarded_count = EXCLUDED.forwarded_count,"
            "  is_verified = EXCLUDED.is_verified, session_data = EXCLUDED.session_data",
            [(user_id, version, r, s, fmi, fc, v, json.dumps(d)) for r, s, fmi, fc, v, d in rows],
        )

    async def get_sessions(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
                " FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
                "   AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)"
                " ORDER BY room_id, session_id",
                user_id, version, room_id, session_id,
            )

    async def delete_sessions(
        self, conn: asyncpg.Connection, user_id: str, version: int, room_id: str | None, session_id: str | None
    ) -> int:
        status = await conn.execute(
            "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2"
            " AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
            user_id, version, room_id, session_id,
        )
        return int(status.split()[-1])

    async def count(self, conn: asyncpg.Connection, user_id: str, version: int) -> int:
        return await conn.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2", user_id, version
        )
