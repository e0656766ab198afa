"""Access and refresh tokens, password hashing, and who is making a request.

Tokens are 256 random bits; only their SHA-256 hashes are stored. Password
hashes are bcrypt, computed in a worker thread so the event loop never waits
on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import bcrypt

from homeserver import errors
from homeserver.config import Config
from homeserver.storage.accounts import AccountStore
from homeserver.storage.database import Database


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str
    is_guest: bool = False
    is_admin: bool = False
    access_token_hash: bytes = b""


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    async def hash(self, password: str) -> str:
        def work() -> str:
            return bcrypt.hashpw(password.encode("utf-8")[:72], bcrypt.gensalt(self.rounds)).decode("ascii")

        return await asyncio.to_thread(work)

    async def verify(self, password: str, stored: str | None) -> bool:
        if not stored:
            # Spend the same time as a real check so timing does not reveal unknown users.
            await self.hash(password)
            return False

        def work() -> bool:
            try:
                return bcrypt.checkpw(password.encode("utf-8")[:72], stored.encode("ascii"))
            except ValueError:
                return False

        return await asyncio.to_thread(work)


class AuthService:
    def __init__(self, config: Config, db: Database, accounts: AccountStore) -> None:
        self.config = config
        self.db = db
        self.accounts = accounts
        self.passwords = PasswordHasher(int(config.get("auth.bcrypt_rounds", 12)))
        self.access_lifetime_ms = int(config.get("auth.access_token_lifetime_ms"))
        self.refresh_lifetime_ms = int(config.get("auth.refresh_token_lifetime_ms"))
        # async (user_id, device_ids) -> None, after devices are deleted (logout, device deletion,
        # password change, deactivation): e.g. E2EE drops their keys and to-device inbox.
        self.on_devices_deleted: list[Any] = []

    async def requester_for_token(self, token: str) -> Requester:
        token_hash = hash_token(token)
        owner = await self.accounts.get_token_owner(token_hash)
        if owner is None or owner.deactivated:
            raise errors.unknown_token()
        if owner.expires_ts is not None and owner.expires_ts <= now_ms():
            raise errors.unknown_token("Access token has expired", soft_logout=True)
        if owner.locked:
            raise errors.MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        if owner.refresh_token_id is not None and not owner.used:
            await self.accounts.mark_access_token_used(token_hash, owner.refresh_token_id)
        return Requester(
            user_id=owner.user_id,
            device_id=owner.device_id,
            is_guest=owner.is_guest,
            is_admin=owner.is_admin,
            access_token_hash=token_hash,
        )

    async def issue_tokens(
        self, conn: Any, user_id: str, device_id: str, *, with_refresh: bool
    ) -> tuple[dict[str, Any], int | None]:
        """Create an access token (and a refresh token when asked) inside the caller's transaction.

        Returns the response fields and the id of the refresh token, if any.
        """
        now = now_ms()
        access = new_token("pat")
        out: dict[str, Any] = {"access_token": access}
        refresh_id = None
        expires_ts = None
        if with_refresh:
            refresh = new_token("prt")
            refresh_id = await self.accounts.add_refresh_token(
                conn,
                token_hash=hash_token(refresh),
                user_id=user_id,
                device_id=device_id,
                now_ms=now,
                expires_ts=now + self.refresh_lifetime_ms if self.refresh_lifetime_ms else None,
            )
            expires_ts = now + self.access_lifetime_ms
            out["refresh_token"] = refresh
            out["expires_in_ms"] = self.access_lifetime_ms
        await self.accounts.add_access_token(
            conn,
            token_hash=hash_token(access),
            user_id=user_id,
            device_id=device_id,
            now_ms=now,
            expires_ts=expires_ts,
            refresh_token_id=refresh_id,
        )
        return out, refresh_id

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            row = await self.accounts.get_refresh_token(conn, hash_token(refresh_token))
            if row is None:
                raise errors.unknown_token("Unknown refresh token")
            if row.expires_ts is not None and row.expires_ts <= now_ms():
                raise errors.unknown_token("Refresh token has expired")
            await self.accounts.use_refresh_token(conn, row.id)
            tokens, new_id = await self.issue_tokens(conn, row.user_id, row.device_id, with_refresh=True)
            assert new_id is not None
            await self.accounts.replace_refresh_token(conn, row, new_id)
        return tokens

    async def logout(self, requester: Requester) -> None:
        async with self.db.transaction() as conn:
            await self.accounts.delete_devices(conn, requester.user_id, [requester.device_id])
        await self.devices_deleted(requester.user_id, [requester.device_id])

    async def logout_all(self, requester: Requester) -> None:
        async with self.db.transaction() as conn:
            removed = await self.accounts.delete_tokens_except(conn, requester.user_id, None)
        await self.devices_deleted(requester.user_id, removed)

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Run the on_devices_deleted hooks (after the commit that deleted the devices)."""
        if device_ids:
            for hook in self.on_devices_deleted:
                await hook(user_id, device_ids)
