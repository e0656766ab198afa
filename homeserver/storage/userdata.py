"""Filters, account data, receipts and presence: the per-user streams /sync delivers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from homeserver.storage.database import Database

# One transaction advisory lock per stream: positions are allocated and committed in order.
STREAM_LOCKS = {"account_data": 0x41434354, "receipts": 0x52435054, "presence": 0x50525343}
STREAM_TABLES = {"account_data": "account_data", "receipts": "receipts", "presence": "presence"}


async def next_stream_id(conn: asyncpg.Connection, stream: str) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", STREAM_LOCKS[stream])
    table = STREAM_TABLES[stream]
    return await conn.fetchval(f"SELECT COALESCE(MAX(stream_id), 0) + 1 FROM {table}")


class UserDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_positions(self) -> dict[str, int]:
        async with self.db.connection() as conn:
            out = {}
            for stream, table in STREAM_TABLES.items():
                out[stream] = await conn.fetchval(f"SELECT COALESCE(MAX(stream_id), 0) FROM {table}")
            return out

    # -- filters -----------------------------------------------------------
    async def add_filter(self, user_id: str, filter_json: str) -> int:
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", user_id)
            existing = await conn.fetchval(
                "SELECT filter_id FROM user_filters WHERE user_id = $1 AND md5(filter_json) = md5($2)"
                " AND filter_json = $2",
                user_id, filter_json,
            )
            if existing is not None:
                return existing
            fid = await conn.fetchval(
                "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM user_filters WHERE user_id = $1", user_id
            )
            await conn.execute(
                "INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)",
                user_id, fid, filter_json,
            )
            return fid

    async def get_filter(self, user_id: str, filter_id: int) -> str | None:
        async with self.db.connection() as conn:
            return await conn.fetchval(
                "SELECT filter_json FROM user_filters WHERE user_id = $1 AND filter_id = $2", user_id, filter_id
            )

    # -- account data ----------------------------------------------------------
    async def put_account_data(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> int:
        async with self.db.transaction() as conn:
            sid = await next_stream_id(conn, "account_data")
            await conn.execute(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = EXCLUDED.content,"
                " stream_id = EXCLUDED.stream_id",
                user_id, room_id, data_type, content, sid,
            )
            return sid

    async def get_account_data(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            return await conn.fetchval(
                "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
                user_id, room_id, data_type,
            )

    async def account_data_since(self, user_id: str, since: int, upto: int) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT room_id, type, content FROM account_data"
                " WHERE user_id = $1 AND stream_id > $2 AND stream_id <= $3",
                user_id, since, upto,
            )

    async def room_account_data(self, user_id: str, room_ids: Sequence[str]) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND room_id = ANY($2::text[])",
                user_id, list(room_ids),
            )

    # -- receipts -------------------------------------------------------------
    async def put_receipt(
        self, room_id: str, receipt_type: str, user_id: str, thread_id: str, event_id: str, event_stream: int, ts: int
    ) -> int | None:
        """Store a receipt unless it would move the user's receipt backwards; the new stream id or None."""
        async with self.db.transaction() as conn:
            current = await conn.fetchval(
                "SELECT event_stream FROM receipts WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3"
                " AND thread_id = $4",
                room_id, receipt_type, user_id, thread_id,
            )
            if current is not None and current >= event_stream:
                return None
            sid = await next_stream_id(conn, "receipts")
            await conn.execute(
                "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream, ts, stream_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = EXCLUDED.event_id,"
                " event_stream = EXCLUDED.event_stream, ts = EXCLUDED.ts, stream_id = EXCLUDED.stream_id",
                room_id, receipt_type, user_id, thread_id, event_id, event_stream, ts, sid,
            )
            return sid

    async def receipts_for_rooms(
        self, room_ids: Sequence[str], since: int, upto: int
    ) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
                " WHERE room_id = ANY($1::text[]) AND stream_id > $2 AND stream_id <= $3",
                list(room_ids), since, upto,
            )

    async def read_up_to(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """room_id -> stream position of the user's latest (unthreaded or main) read receipt."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT room_id, MAX(event_stream) AS pos FROM receipts WHERE user_id = $1"
                " AND room_id = ANY($2::text[]) AND receipt_type IN ('m.read', 'm.read.private')"
                " AND thread_id IN ('', 'main') GROUP BY room_id",
                user_id, list(room_ids),
            )
        return {r["room_id"]: r["pos"] for r in rows}

    # -- presence ---------------------------------------------------------------
    async def get_presence(self, user_ids: Sequence[str]) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT user_id, state, status_msg, last_active_ts, currently_active, stream_id FROM presence"
                " WHERE user_id = ANY($1::text[])",
                list(user_ids),
            )

    async def set_presence(
        self, user_id: str, state: str, status_msg: str | None, last_active_ts: int, currently_active: bool,
        *, keep_status: bool,
    ) -> int:
        async with self.db.transaction() as conn:
            sid = await next_stream_id(conn, "presence")
            await conn.execute(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active, stream_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state,"
                " status_msg = CASE WHEN $7 THEN presence.status_msg ELSE EXCLUDED.status_msg END,"
                " last_active_ts = EXCLUDED.last_active_ts, currently_active = EXCLUDED.currently_active,"
                " stream_id = EXCLUDED.stream_id",
                user_id, state, status_msg, last_active_ts, currently_active, sid, keep_status,
            )
            return sid

    async def presence_since(self, user_ids: Sequence[str], since: int, upto: int) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT user_id, state, status_msg, last_active_ts, currently_active FROM presence"
                " WHERE user_id = ANY($1::text[]) AND stream_id > $2 AND stream_id <= $3",
                list(user_ids), since, upto,
            )

    async def touch_sync(self, user_id: str, now_ms: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute("UPDATE presence SET last_sync_ts = $2 WHERE user_id = $1", user_id, now_ms)

    async def stale_online(self, before_ms: int) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM presence WHERE state <> 'offline' AND last_sync_ts < $1 AND last_sync_ts > 0",
                before_ms,
            )
        return [r["user_id"] for r in rows]

    async def users_sharing_rooms(self, user_id: str) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT b.user_id FROM room_memberships a JOIN room_memberships b USING (room_id)"
                " WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'",
                user_id,
            )
        return [r["user_id"] for r in rows]
