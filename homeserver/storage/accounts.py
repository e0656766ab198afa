"""Users, profiles, devices, access/refresh tokens, UIA sessions and registration tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver.storage.database import Database


class UserExists(Exception):
    pass


class RegistrationTokenExhausted(Exception):
    pass


@dataclass(frozen=True)
class TokenOwner:
    user_id: str
    device_id: str
    is_guest: bool
    is_admin: bool
    deactivated: bool
    locked: bool
    suspended: bool
    expires_ts: int | None
    refresh_token_id: int | None
    used: bool


@dataclass(frozen=True)
class RefreshTokenRow:
    id: int
    user_id: str
    device_id: str
    expires_ts: int | None
    next_token_id: int | None
    used: bool


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Token -> owner, for the lookup every request makes. Any write that could change an
        # answer (tokens or devices deleted, a user deactivated or made admin, a token's first
        # use) empties it, again after its commit; a lookup that raced such a write is not kept.
        self._owners: dict[bytes, TokenOwner] = {}
        self._owners_generation = 0

    def _tokens_changed(self, conn: Any = None) -> None:
        self._forget_owners()
        if conn is not None:
            self.db.after_commit(conn, self._forget_owners)

    def _forget_owners(self) -> None:
        self._owners_generation += 1
        self._owners.clear()

    # -- users -----------------------------------------------------------
    async def create_user(
        self,
        conn: asyncpg.Connection,
        *,
        user_id: str,
        localpart: str,
        password_hash: str | None,
        is_admin: bool,
        is_guest: bool,
        displayname: str | None,
        now_ms: int,
    ) -> None:
        try:
            await conn.execute(
                "INSERT INTO users (user_id, localpart, password_hash, is_admin, is_guest, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                user_id, localpart, password_hash, is_admin, is_guest, now_ms,
            )
        except asyncpg.UniqueViolationError as e:
            raise UserExists(user_id) from e
        await conn.execute(
            "INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)", user_id, displayname
        )

    async def user_exists(self, user_id: str) -> bool:
        async with self.db.connection() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id))

    async def get_user(self, user_id: str) -> asyncpg.Record | None:
        async with self.db.connection() as conn:
            return await conn.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)

    async def set_password_hash(self, conn: asyncpg.Connection, user_id: str, password_hash: str | None) -> None:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash)

    async def set_deactivated(self, conn: asyncpg.Connection, user_id: str) -> None:
        self._tokens_changed(conn)
        await conn.execute(
            "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1", user_id
        )

    async def set_admin(self, user_id: str, is_admin: bool) -> None:
        async with self.db.connection() as conn:
            await conn.execute("UPDATE users SET is_admin = $2 WHERE user_id = $1", user_id, is_admin)
        self._tokens_changed()

    # -- profiles --------------------------------------------------------
    async def get_profile(self, user_id: str) -> asyncpg.Record | None:
        async with self.db.connection() as conn:
            return await conn.fetchrow(
                "SELECT p.displayname, p.avatar_url, p.fields FROM profiles p"
                " JOIN users u USING (user_id) WHERE p.user_id = $1",
                user_id,
            )

    async def set_profile_field(self, user_id: str, field: str, value: Any) -> None:
        if field not in ("displayname", "avatar_url"):
            raise ValueError(field)
        async with self.db.connection() as conn:
            await conn.execute(f"UPDATE profiles SET {field} = $2 WHERE user_id = $1", user_id, value)

    async def clear_profile(self, conn: asyncpg.Connection, user_id: str) -> None:
        await conn.execute(
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL, fields = '{}'::jsonb WHERE user_id = $1",
            user_id,
        )

    # -- devices ---------------------------------------------------------
    async def upsert_device(
        self, conn: asyncpg.Connection, user_id: str, device_id: str, display_name: str | None, now_ms: int
    ) -> None:
        await conn.execute(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts)"
            " VALUES ($1, $2, $3, $4, $4)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET"
            "   display_name = COALESCE(EXCLUDED.display_name, devices.display_name)",
            user_id, device_id, display_name, now_ms,
        )

    async def get_devices(self, user_id: str) -> list[asyncpg.Record]:
        async with self.db.connection() as conn:
            return await conn.fetch(
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
                " WHERE user_id = $1 ORDER BY device_id",
                user_id,
            )

    async def get_device(self, user_id: str, device_id: str) -> asyncpg.Record | None:
        async with self.db.connection() as conn:
            return await conn.fetchrow(
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
                " WHERE user_id = $1 AND device_id = $2",
                user_id, device_id,
            )

    async def rename_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        async with self.db.connection() as conn:
            status = await conn.execute(
                "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                user_id, device_id, display_name,
            )
        return status != "UPDATE 0"

    async def delete_devices(self, conn: asyncpg.Connection, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and every token of theirs."""
        self._tokens_changed(conn)
        await conn.execute(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, device_ids
        )
        await conn.execute(
            "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, device_ids
        )
        await conn.execute(
            "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2::text[])", user_id, device_ids
        )

    async def device_ids(self, conn: asyncpg.Connection, user_id: str) -> list[str]:
        rows = await conn.fetch("SELECT device_id FROM devices WHERE user_id = $1", user_id)
        return [r["device_id"] for r in rows]

    async def touch_device(self, user_id: str, device_id: str, ip: str | None, now_ms: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2",
                user_id, device_id, now_ms, ip,
            )

    # -- tokens ----------------------------------------------------------
    async def add_access_token(
        self,
        conn: asyncpg.Connection,
        *,
        token_hash: bytes,
        user_id: str,
        device_id: str,
        now_ms: int,
        expires_ts: int | None,
        refresh_token_id: int | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_token_id)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            token_hash, user_id, device_id, now_ms, expires_ts, refresh_token_id,
        )

    async def add_refresh_token(
        self,
        conn: asyncpg.Connection,
        *,
        token_hash: bytes,
        user_id: str,
        device_id: str,
        now_ms: int,
        expires_ts: int | None,
    ) -> int:
        return await conn.fetchval(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, expires_ts)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            token_hash, user_id, device_id, now_ms, expires_ts,
        )

    async def get_token_owner(self, token_hash: bytes) -> TokenOwner | None:
        owner = self._owners.get(token_hash)
        if owner is not None:
            return owner
        generation = self._owners_generation
        owner = await self._read_token_owner(token_hash)
        if owner is not None and generation == self._owners_generation:
            if len(self._owners) >= 100_000:
                self._owners.clear()
            self._owners[token_hash] = owner
        return owner

    async def _read_token_owner(self, token_hash: bytes) -> TokenOwner | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT t.user_id, t.device_id, t.expires_ts, t.refresh_token_id, t.used,"
                "       u.is_guest, u.is_admin, u.deactivated, u.locked, u.suspended"
                " FROM access_tokens t JOIN users u USING (user_id) WHERE t.token_hash = $1",
                token_hash,
            )
        if row is None:
            return None
        return TokenOwner(
            user_id=row["user_id"],
            device_id=row["device_id"],
            is_guest=row["is_guest"],
            is_admin=row["is_admin"],
            deactivated=row["deactivated"],
            locked=row["locked"],
            suspended=row["suspended"],
            expires_ts=row["expires_ts"],
            refresh_token_id=row["refresh_token_id"],
            used=row["used"],
        )

    async def mark_access_token_used(self, token_hash: bytes, refresh_token_id: int) -> None:
        """First use of an access token born of a refresh: the refresh token it replaced dies."""
        async with self.db.transaction() as conn:
            self._tokens_changed(conn)
            await conn.execute("UPDATE access_tokens SET used = TRUE WHERE token_hash = $1", token_hash)
            await self._retire_predecessors(conn, refresh_token_id)

    async def _retire_predecessors(self, conn: asyncpg.Connection, refresh_token_id: int) -> None:
        await conn.execute("DELETE FROM refresh_tokens WHERE next_token_id = $1", refresh_token_id)

    async def get_refresh_token(self, conn: asyncpg.Connection, token_hash: bytes) -> RefreshTokenRow | None:
        row = await conn.fetchrow(
            "SELECT id, user_id, device_id, expires_ts, next_token_id, used FROM refresh_tokens"
            " WHERE token_hash = $1 FOR UPDATE",
            token_hash,
        )
        if row is None:
            return None
        return RefreshTokenRow(**dict(row))

    async def replace_refresh_token(
        self, conn: asyncpg.Connection, old: RefreshTokenRow, new_id: int
    ) -> None:
        """Link the old token to its successor; using the successor deletes the old one.

        The access tokens issued with the old refresh token stop working now. A
        successor made by an earlier refresh whose answer the client never saw is
        dropped with its access token.
        """
        old_id = old.id
        self._tokens_changed(conn)
        if old.next_token_id is not None:
            await conn.execute("DELETE FROM access_tokens WHERE refresh_token_id = $1", old.next_token_id)
            await conn.execute("DELETE FROM refresh_tokens WHERE id = $1", old.next_token_id)
        await conn.execute(
            "UPDATE refresh_tokens SET next_token_id = $2, used = TRUE WHERE id = $1", old_id, new_id
        )
        await self._retire_predecessors(conn, old_id)
        await conn.execute("DELETE FROM access_tokens WHERE refresh_token_id = $1", old_id)

    async def use_refresh_token(self, conn: asyncpg.Connection, refresh_id: int) -> None:
        await self._retire_predecessors(conn, refresh_id)

    async def delete_access_token(self, token_hash: bytes) -> None:
        async with self.db.transaction() as conn:
            self._tokens_changed(conn)
            row = await conn.fetchrow(
                "DELETE FROM access_tokens WHERE token_hash = $1 RETURNING user_id, device_id", token_hash
            )
            if row is not None:
                await conn.execute(
                    "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2",
                    row["user_id"], row["device_id"],
                )

    async def delete_tokens_except(
        self, conn: asyncpg.Connection, user_id: str, keep_device_id: str | None
    ) -> list[str]:
        """Log out every device of the user but one; returns the devices removed."""
        rows = await conn.fetch(
            "SELECT device_id FROM devices WHERE user_id = $1 AND device_id IS DISTINCT FROM $2",
            user_id, keep_device_id,
        )
        ids = [r["device_id"] for r in rows]
        await self.delete_devices(conn, user_id, ids)
        return ids

    # -- user-interactive auth sessions -----------------------------------
    async def create_uia_session(
        self, session_id: str, purpose: str, user_id: str | None, params: dict[str, Any], now_ms: int
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO uia_sessions (session_id, created_ts, purpose, user_id, params)"
                " VALUES ($1, $2, $3, $4, $5)",
                session_id, now_ms, purpose, user_id, params,
            )

    async def get_uia_session(self, session_id: str) -> asyncpg.Record | None:
        async with self.db.connection() as conn:
            return await conn.fetchrow("SELECT * FROM uia_sessions WHERE session_id = $1", session_id)

    async def complete_uia_stage(self, session_id: str, stage: str, data: dict[str, Any] | None = None) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE uia_sessions SET"
                "  completed = CASE WHEN completed ? $2 THEN completed ELSE completed || to_jsonb($2::text) END,"
                "  data = data || $3::jsonb"
                " WHERE session_id = $1",
                session_id, stage, data or {},
            )

    async def delete_uia_session(self, session_id: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)

    async def expire_uia_sessions(self, older_than_ms: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute("DELETE FROM uia_sessions WHERE created_ts < $1", older_than_ms)

    # -- registration tokens ---------------------------------------------
    async def create_registration_token(
        self, token: str, uses_allowed: int | None, expiry_ts: int | None, now_ms: int
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts)"
                " VALUES ($1, $2, $3, $4)",
                token, uses_allowed, expiry_ts, now_ms,
            )

    async def registration_token_valid(self, token: str, now_ms: int) -> bool:
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM registration_tokens WHERE token = $1", token)
        return _token_usable(row, now_ms)

    async def consume_registration_token(self, conn: asyncpg.Connection, token: str, now_ms: int) -> None:
        row = await conn.fetchrow("SELECT * FROM registration_tokens WHERE token = $1 FOR UPDATE", token)
        if not _token_usable(row, now_ms):
            raise RegistrationTokenExhausted(token)
        await conn.execute("UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1", token)


def _token_usable(row: asyncpg.Record | None, now_ms: int) -> bool:
    if row is None:
        return False
    if row["expiry_ts"] is not None and row["expiry_ts"] <= now_ms:
        return False
    if row["uses_allowed"] is not None and row["completed"] >= row["uses_allowed"]:
        return False
    return True
