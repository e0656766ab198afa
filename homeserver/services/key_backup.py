"""Server-side key backup (CS API § Server-side key backups): versions, and encrypted
Megolm session keys stored in the current version.

Keys are only written to the most recent version (M_WRONG_ROOM_KEYS_VERSION
otherwise); a session already stored is replaced only by a better key (see
``core.e2e_keys.should_replace_backup_key``). Every write that changes the
backup moves its ``etag``.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver import errors
from homeserver.core.e2e_keys import should_replace_backup_key
from homeserver.services.auth import Requester
from homeserver.storage.database import Database
from homeserver.storage.key_backup import KeyBackupStore

MAX_SESSIONS_PER_UPLOAD = 10_000


def _parse_version(version: str | None) -> int:
    if version is None:
        raise errors.missing_param("'version' is required")
    if not version.isdigit() or len(version) > 18:
        # Opaque to clients, but ours are numbers: anything else names no backup.
        raise errors.not_found("Unknown backup version")
    return int(version)


def _version_json(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": str(info["version"]),
        "algorithm": info["algorithm"],
        "auth_data": info["auth_data"],
        "etag": str(info["etag"]),
        "count": info["count"],
    }


def _check_session(room_id: Any, session_id: Any, data: Any) -> tuple[str, str, int, int, bool, Any]:
    if not isinstance(data, dict):
        raise errors.bad_json("key backup data must be an object")
    fmi, fc, verified, session_data = (
        data.get("first_message_index"), data.get("forwarded_count"), data.get("is_verified"), data.get("session_data")
    )
    if not isinstance(fmi, int) or isinstance(fmi, bool) or fmi < 0:
        raise errors.bad_json("'first_message_index' must be a non-negative integer")
    if not isinstance(fc, int) or isinstance(fc, bool) or fc < 0:
        raise errors.bad_json("'forwarded_count' must be a non-negative integer")
    if not isinstance(verified, bool):
        raise errors.bad_json("'is_verified' must be a boolean")
    if not isinstance(session_data, dict):
        raise errors.bad_json("'session_data' must be an object")
    return room_id, session_id, fmi, fc, verified, session_data


class KeyBackupService:
    def __init__(self, db: Database, store: KeyBackupStore) -> None:
        self.db = db
        self.store = store

    # -- versions ---------------------------------------------------------------
    async def create_version(self, who: Requester, body: dict[str, Any]) -> dict[str, Any]:
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str) or not algorithm:
            raise errors.bad_json("'algorithm' must be a string")
        if not isinstance(auth_data, dict):
            raise errors.bad_json("'auth_data' must be an object")
        async with self.db.transaction() as conn:
            await self.store.lock_user(conn, who.user_id)
            version = await self.store.create_version(conn, who.user_id, algorithm, auth_data)
        return {"version": str(version)}

    async def get_version(self, who: Requester, version: str | None) -> dict[str, Any]:
        if version is None:
            current = await self.store.current_version(who.user_id)
            if current is None:
                raise errors.not_found("No current backup version")
            number = current
        else:
            number = _parse_version(version)
        info = await self.store.get_version(who.user_id, number)
        if info is None:
            raise errors.not_found("Unknown backup version")
        return _version_json(info)

    async def update_version(self, who: Requester, version: str, body: dict[str, Any]) -> None:
        number = _parse_version(version)
        algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
        if not isinstance(algorithm, str):
            raise errors.bad_json("'algorithm' must be a string")
        if not isinstance(auth_data, dict):
            raise errors.bad_json("'auth_data' must be an object")
        if "version" in body and body["version"] != version:
            raise errors.invalid_param("'version' in the body does not match the path")
        async with self.db.transaction() as conn:
            await self.store.lock_user(conn, who.user_id)
            info = await self.store.get_version(who.user_id, number, conn)
            if info is None:
                raise errors.not_found("Unknown backup version")
            if info["algorithm"] != algorithm:
                raise errors.invalid_param("Algorithm does not match")
            await self.store.update_auth_data(conn, who.user_id, number, auth_data)

    async def delete_version(self, who: Requester, version: str) -> None:
        number = _parse_version(version)
        if not await self.store.version_ever_existed(who.user_id, number):
            raise errors.not_found("Unknown backup version")
        async with self.db.transaction() as conn:
            await self.store.lock_user(conn, who.user_id)
            await self.store.delete_version(conn, who.user_id, number)

    # -- keys -----------------------------------------------------------------------
    async def put_keys(
        self, who: Requester, version: str | None, body: dict[str, Any],
        room_id: str | None = None, session_id: str | None = None,
    ) -> dict[str, Any]:
        number = _parse_version(version)
        sessions: list[tuple[str, str, int, int, bool, Any]] = []
        if room_id is not None and session_id is not None:
            sessions.append(_check_session(room_id, session_id, body))
        elif room_id is not None:
            by_session = body.get("sessions")
            if not isinstance(by_session, dict):
                raise errors.bad_json("'sessions' must be an object")
            sessions.extend(_check_session(room_id, s, d) for s, d in by_session.items())
        else:
            rooms = body.get("rooms")
            if not isinstance(rooms, dict):
                raise errors.bad_json("'rooms' must be an object")
            for r, room in rooms.items():
                if not isinstance(room, dict) or not isinstance(room.get("sessions"), dict):
                    raise errors.bad_json("each room must have a 'sessions' object")
                sessions.extend(_check_session(r, s, d) for s, d in room["sessions"].items())
        if len(sessions) > MAX_SESSIONS_PER_UPLOAD:
            raise errors.too_large("too many sessions in one upload")
        user_id = who.user_id
        async with self.db.transaction() as conn:
            await self.store.lock_user(conn, user_id)
            current = await self.store.current_version(user_id, conn)
            if current is None:
                raise errors.not_found("Unknown backup version")
            if number != current:
                raise errors.MatrixError(
                    403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", current_version=str(current)
                )
            stored = await self.store.get_sessions_for_update(
                conn, user_id, number, [s[0] for s in sessions], [s[1] for s in sessions]
            )
            winners: dict[tuple[str, str], tuple[str, str, int, int, bool, Any]] = {}
            for s in sessions:
                key = (s[0], s[1])
                prev = winners.get(key)
                current_meta = (
                    {"first_message_index": prev[2], "forwarded_count": prev[3], "is_verified": prev[4]}
                    if prev is not None else (dict(stored[key]) if key in stored else None)
                )
                new_meta = {"first_message_index": s[2], "forwarded_count": s[3], "is_verified": s[4]}
                if should_replace_backup_key(current_meta, new_meta):
                    winners[key] = s
            if winners:
                await self.store.put_sessions(conn, user_id, number, list(winners.values()))
                etag = await self.store.bump_etag(conn, user_id, number)
            else:
                info = await self.store.get_version(user_id, number, conn)
                assert info is not None
                etag = info["etag"]
            count = await self.store.count(conn, user_id, number)
        return {"etag": str(etag), "count": count}

    async def get_keys(
        self, who: Requester, version: str | None, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        number = _parse_version(version)
        if await self.store.get_version(who.user_id, number) is None:
            raise errors.not_found("Unknown backup version")
        rows = await self.store.get_sessions(who.user_id, number, room_id, session_id)

        def data(r: Any) -> dict[str, Any]:
            return {
                "first_message_index": r["first_message_index"],
                "forwarded_count": r["forwarded_count"],
                "is_verified": r["is_verified"],
                "session_data": json.loads(r["session_data"]),
            }

        if session_id is not None:
            if not rows:
                raise errors.not_found("No room key found")
            return data(rows[0])
        if room_id is not None:
            return {"sessions": {r["session_id"]: data(r) for r in rows}}
        rooms: dict[str, Any] = {}
        for r in rows:
            rooms.setdefault(r["room_id"], {"sessions": {}})["sessions"][r["session_id"]] = data(r)
        return {"rooms": rooms}

    async def delete_keys(
        self, who: Requester, version: str | None, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        number = _parse_version(version)
        async with self.db.transaction() as conn:
            await self.store.lock_user(conn, who.user_id)
            info = await self.store.get_version(who.user_id, number, conn)
            if info is None:
                raise errors.not_found("Unknown backup version")
            deleted = await self.store.delete_sessions(conn, who.user_id, number, room_id, session_id)
            etag = await self.store.bump_etag(conn, who.user_id, number) if deleted else info["etag"]
            count = await self.store.count(conn, who.user_id, number)
        return {"etag": str(etag), "count": count}
