"""End-to-end encryption data: device, one-time, fallback and cross-signing keys, signatures,
the to-device inbox and the device-list stream.

Positions on the ``to_device`` and ``device_lists`` streams are allocated from
``stream_positions`` under a transaction advisory lock per stream, held until
commit: positions become visible in order, so a reader at position N has seen
every position below it. (The inbox is emptied as clients acknowledge it, so
MAX(stream_id) could go backwards; the counter row never does.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from homeserver.storage.database import Database

TO_DEVICE_LOCK = 0x54444556  # "TDEV"
DEVICE_LISTS_LOCK = 0x444C5354  # "DLST"
STREAM_LOCKS = {"to_device": TO_DEVICE_LOCK, "device_lists": DEVICE_LISTS_LOCK}


class E2EEStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- stream positions ----------------------------------------------------
    async def _allocate(self, conn: asyncpg.Connection, stream: str, count: int) -> int:
        """Reserve ``count`` positions; returns the last. Caller must be in a transaction."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", STREAM_LOCKS[stream])
        return await conn.fetchval(
            "UPDATE stream_positions SET position = position + $2 WHERE stream = $1 RETURNING position",
            stream, count,
        )

    async def max_positions(self) -> tuple[int, int]:
        async with self.db.connection() as conn:
            rows = await conn.fetch("SELECT stream, position FROM stream_positions")
        pos = {r["stream"]: r["position"] for r in rows}
        return pos.get("to_device", 0), pos.get("device_lists", 0)

    # -- device keys -------------------------------------------------------------
    async def device_exists(self, conn: asyncpg.Connection, user_id: str, device_id: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
        ))

    async def get_device_keys(
        self, user_id: str, device_id: str, conn: asyncpg.Connection | None = None
    ) -> dict[str, Any] | None:
        sql = "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2"
        if conn is None:
            async with self.db.connection() as c:
                text = await c.fetchval(sql, user_id, device_id)
        else:
            text = await conn.fetchval(sql, user_id, device_id)
        return json.loads(text) if text is not None else None

    async def set_device_keys(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, key_json: str, ts: int
    ) -> bool:
        """Store a device's keys; True if they are new or differ from what was stored."""
        old = await conn.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
            user_id, device_id,
        )
        if old == key_json:
            return False
        await conn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json, ts = EXCLUDED.ts",
            user_id, device_id, key_json, ts,
        )
        return True

    async def device_keys_for_users(self, user_ids: Sequence[str]) -> list[asyncpg.Record]:
        """Keys of existing devices of these users, with the devices' display names."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT k.user_id, k.device_id, k.key_json, d.display_name"
                " FROM e2e_device_keys k JOIN devices d USING (user_id, device_id)"
                " WHERE k.user_id = ANY($1::text[]) ORDER BY k.user_id, k.device_id",
                list(user_ids),
            )

    async def delete_device_data(self, conn: asyncpg.Connection, user_id: str, device_ids: Sequence[str]) -> None:
        """Everything end-to-end a set of deleted devices leaves behind."""
        ids = list(device_ids)
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox", "to_device_txns"):
            await conn.execute(
                f"DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, ids
            )
        await conn.execute(
            "DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1 AND target_key_id = ANY($2::text[])",
            user_id, ids,
        )

    # -- one-time and fallback keys ----------------------------------------------------
    async def existing_one_time_keys(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, algorithms: Sequence[str], ids: Sequence[str]
    ) -> dict[tuple[str, str], str]:
        rows = await conn.fetch(
            "SELECT k.algorithm, k.key_id, k.key_json FROM e2e_one_time_keys k"
            " JOIN unnest($3::text[], $4::text[]) AS w(a, i) ON k.algorithm = w.a AND k.key_id = w.i"
            " WHERE k.user_id = $1 AND k.device_id = $2",
            user_id, device_id, list(algorithms), list(ids),
        )
        return {(r["algorithm"], r["key_id"]): r["key_json"] for r in rows}

    async def add_one_time_keys(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, keys: Sequence[tuple[str, str, str]], ts: int
    ) -> None:
        """keys: (algorithm, key_id, key_json). Already-stored identical keys are skipped by the caller."""
        if not keys:
            return
        await conn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [(user_id, device_id, a, k, j, ts) for a, k, j in keys],
        )

    async def count_one_time_keys(
        self, user_id: str, device_id: str, conn: asyncpg.Connection | None = None
    ) -> dict[str, int]:
        sql = (
            "SELECT algorithm, COUNT(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm"
        )
        if conn is None:
            async with self.db.connection() as c:
                rows = await c.fetch(sql, user_id, device_id)
        else:
            rows = await conn.fetch(sql, user_id, device_id)
        return {r["algorithm"]: r["n"] for r in rows}

    async def set_fallback_key(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, algorithm: str, key_id: str, key_json: str
    ) -> None:
        """Replace the device's fallback key of this algorithm; re-uploading the same key keeps its `used` flag."""
        await conn.execute(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES ($1, $2, $3, $4, $5, FALSE)"
            " ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
            "   key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = FALSE"
            " WHERE e2e_fallback_keys.key_id <> EXCLUDED.key_id OR e2e_fallback_keys.key_json <> EXCLUDED.key_json",
            user_id, device_id, algorithm, key_id, key_json,
        )

    async def key_counts_for(
        self, devices: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[dict[str, int], list[str]]]:
        """(user, device) -> (one-time key count per algorithm, unused fallback key algorithms)."""
        users, device_ids = [d[0] for d in devices], [d[1] for d in devices]
        out: dict[tuple[str, str], tuple[dict[str, int], list[str]]] = {}
        async with self.db.connection() as conn:
            counts = await conn.fetch(
                "SELECT k.u, k.d, o.algorithm, COUNT(*) AS n FROM unnest($1::text[], $2::text[]) AS k(u, d)"
                " JOIN e2e_one_time_keys o ON o.user_id = k.u AND o.device_id = k.d GROUP BY k.u, k.d, o.algorithm",
                users, device_ids,
            )
            fallbacks = await conn.fetch(
                "SELECT k.u, k.d, f.algorithm FROM unnest($1::text[], $2::text[]) AS k(u, d)"
                " JOIN e2e_fallback_keys f ON f.user_id = k.u AND f.device_id = k.d WHERE NOT f.used"
                " ORDER BY f.algorithm",
                users, device_ids,
            )
        for r in counts:
            out.setdefault((r["u"], r["d"]), ({}, []))[0][r["algorithm"]] = r["n"]
        for r in fallbacks:
            out.setdefault((r["u"], r["d"]), ({}, []))[1].append(r["algorithm"])
        return out

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used"
                " ORDER BY algorithm",
                user_id, device_id,
            )
        return [r["algorithm"] for r in rows]

    async def claim_one_time_key(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, str] | None:
        """Remove and return one key (key_id, key_json). Concurrent claimers skip rows another holds,
        so each key is handed out exactly once."""
        row = await conn.fetchrow(
            "DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) = ("
            "  SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys"
            "  WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
            "  ORDER BY ts, key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING key_id, key_json",
            user_id, device_id, algorithm,
        )
        return (row["key_id"], row["key_json"]) if row is not None else None

    async def claim_fallback_key(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, str] | None:
        """The fallback key (handed out as often as needed), marked used."""
        row = await conn.fetchrow(
            "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3"
            " RETURNING key_id, key_json",
            user_id, device_id, algorithm,
        )
        return (row["key_id"], row["key_json"]) if row is not None else None

    # -- cross-signing ---------------------------------------------------------------
    async def cross_signing_keys(
        self, user_ids: Sequence[str], conn: asyncpg.Connection | None = None
    ) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
        """user_id -> key_type -> (public_key, key object)."""
        sql = (
            "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys"
            " WHERE user_id = ANY($1::text[])"
        )
        if conn is None:
            async with self.db.connection() as c:
                rows = await c.fetch(sql, list(user_ids))
        else:
            rows = await conn.fetch(sql, list(user_ids))
        out: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
        for r in rows:
            out.setdefault(r["user_id"], {})[r["key_type"]] = (r["public_key"], json.loads(r["key_json"]))
        return out

    async def lock_cross_signing(self, conn: asyncpg.Connection, user_id: str) -> None:
        """Serialise cross-signing changes of one user (until commit)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('xsign:' || $1, 0))", user_id)

    async def set_cross_signing_keys(
        self, conn: asyncpg.Connection, user_id: str, keys: Sequence[tuple[str, str, str]], ts: int
    ) -> None:
        """keys: (key_type, public_key, key_json)."""
        await conn.executemany(
            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json, ts)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key_type) DO UPDATE SET"
            "   public_key = EXCLUDED.public_key, key_json = EXCLUDED.key_json, ts = EXCLUDED.ts",
            [(user_id, t, p, j, ts) for t, p, j in keys],
        )

    async def add_signatures(self, conn: asyncpg.Connection, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """rows: (signer_user_id, signer_key_id, target_user_id, target_key_id, signature)."""
        await conn.executemany(
            "INSERT INTO e2e_cross_signing_signatures"
            " (signer_user_id, signer_key_id, target_user_id, target_key_id, signature)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)"
            " DO UPDATE SET signature = EXCLUDED.signature",
            list(rows),
        )

    async def signatures_on(self, target_user_ids: Sequence[str]) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT signer_user_id, signer_key_id, target_user_id, target_key_id, signature"
                " FROM e2e_cross_signing_signatures WHERE target_user_id = ANY($1::text[])",
                list(target_user_ids),
            )

    # -- device-list stream ---------------------------------------------------------
    async def add_device_list_change(self, conn: asyncpg.Connection, user_id: str) -> int:
        pos = await self._allocate(conn, "device_lists", 1)
        await conn.execute("INSERT INTO device_list_changes (stream_id, user_id) VALUES ($1, $2)", pos, user_id)
        return pos

    async def users_sharing_a_room_with(self, user_id: str) -> set[str]:
        """Users joined to a room the user is joined to (the user included)."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT b.user_id FROM room_memberships a JOIN room_memberships b USING (room_id)"
                " WHERE a.user_id = $1 AND a.membership = 'join' AND b.membership = 'join'",
                user_id,
            )
        return {r["user_id"] for r in rows} | {user_id}

    async def device_list_changes_seen_by(self, user_id: str, since: int, upto: int) -> set[str]:
        """Users whose devices changed in (since, upto] and who share a room with user_id now (or are user_id)."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT c.user_id FROM device_list_changes c"
                " WHERE c.stream_id > $2 AND c.stream_id <= $3 AND (c.user_id = $1 OR EXISTS ("
                "   SELECT 1 FROM room_memberships a JOIN room_memberships b USING (room_id)"
                "   WHERE a.user_id = $1 AND a.membership = 'join'"
                "     AND b.user_id = c.user_id AND b.membership = 'join'))",
                user_id, since, upto,
            )
        return {r["user_id"] for r in rows}

    async def membership_changes_around(self, user_id: str, since: int, upto: int) -> list[asyncpg.Record]:
        """Membership events in (since, upto] of the rooms the user has ever had a membership in."""
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT e.room_id, e.state_key, e.membership FROM events e"
                " WHERE e.type = 'm.room.member' AND e.stream_ordering > $2 AND e.stream_ordering <= $3"
                "   AND NOT e.outlier AND e.rejection IS NULL"
                "   AND e.room_id IN (SELECT room_id FROM room_memberships WHERE user_id = $1)"
                " ORDER BY e.stream_ordering",
                user_id, since, upto,
            )

    async def joined_members(self, room_ids: Sequence[str]) -> set[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT user_id FROM room_memberships WHERE room_id = ANY($1::text[]) AND membership = 'join'",
                list(room_ids),
            )
        return {r["user_id"] for r in rows}

    # -- to-device -------------------------------------------------------------------
    async def claim_to_device_txn(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, txn_id: str, ts: int
    ) -> bool:
        """Record the transaction; False if this device already sent it (a retry)."""
        status = await conn.execute(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            user_id, device_id, txn_id, ts,
        )
        return status == "INSERT 0 1"

    async def device_ids(self, conn: asyncpg.Connection, user_ids: Sequence[str]) -> dict[str, list[str]]:
        rows = await conn.fetch(
            "SELECT user_id, device_id FROM devices WHERE user_id = ANY($1::text[]) ORDER BY device_id",
            list(user_ids),
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["user_id"], []).append(r["device_id"])
        return out

    async def device_ids_of(self, user_id: str) -> list[str]:
        async with self.db.connection() as conn:
            return (await self.device_ids(conn, [user_id])).get(user_id, [])

    async def enqueue_to_device(
        self, conn: asyncpg.Connection, sender: str, messages: Sequence[tuple[str, str, str, str]]
    ) -> int:
        """messages: (user_id, device_id, type, content_json). Returns the last position used."""
        last = await self._allocate(conn, "to_device", len(messages))
        first = last - len(messages) + 1
        await conn.executemany(
            "INSERT INTO device_inbox (stream_id, user_id, device_id, sender, type, content)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(first + i, u, d, sender, t, c) for i, (u, d, t, c) in enumerate(messages)],
        )
        return last

    async def to_device_inbox(
        self, user_id: str, device_id: str, since: int, limit: int
    ) -> list[asyncpg.Record]:
        """Drop what the device acknowledged (stream_id <= since); return the next `limit` messages."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3",
                user_id, device_id, since,
            )
            return await conn.fetch(
                "SELECT stream_id, sender, type, content FROM device_inbox"
                " WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 ORDER BY stream_id LIMIT $4",
                user_id, device_id, since, limit,
            )
