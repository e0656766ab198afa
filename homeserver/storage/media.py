"""Media metadata: local media rows (one per media ID) and thumbnails (one set per content hash)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from homeserver.storage.database import Database


@dataclass(frozen=True)
class MediaRow:
    media_id: str
    user_id: str
    created_ts: int
    sha256: str | None
    size: int | None
    content_type: str | None
    upload_name: str | None
    uploaded_ts: int | None
    unused_expires_ts: int | None
    authenticated: bool
    width: int | None
    height: int | None
    animated: bool
    thumbnail_failed: bool
    quarantined_by: str | None
    quarantined_ts: int | None

    @property
    def uploaded(self) -> bool:
        return self.sha256 is not None

    @property
    def quarantined(self) -> bool:
        return self.quarantined_ts is not None


@dataclass(frozen=True)
class ThumbnailRow:
    source_sha256: str
    method: str
    box_width: int
    box_height: int
    animated: bool
    width: int
    height: int
    content_type: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ContentFacts:
    """What an upload commits: the stored content and what was learnt from its bytes."""

    sha256: str
    size: int
    content_type: str
    upload_name: str | None
    width: int | None
    height: int | None
    animated: bool


class MediaConflict(Exception):
    """The media ID already has content (or does not exist any more)."""


_MEDIA_COLUMNS = (
    "media_id, user_id, created_ts, sha256, size, content_type, upload_name, uploaded_ts,"
    " unused_expires_ts, authenticated, width, height, animated, thumbnail_failed,"
    " quarantined_by, quarantined_ts"
)
_THUMB_COLUMNS = (
    "source_sha256, method, box_width, box_height, animated, width, height, content_type, sha256, size"
)


def _media(row: asyncpg.Record | None) -> MediaRow | None:
    return MediaRow(**dict(row)) if row is not None else None


class MediaRepositoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- media rows ------------------------------------------------------
    async def insert_uploaded(
        self, media_id: str, user_id: str, facts: ContentFacts, *, authenticated: bool, now_ms: int
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, sha256, size, content_type,"
                " upload_name, uploaded_ts, authenticated, width, height, animated)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $3, $8, $9, $10, $11)",
                media_id, user_id, now_ms, facts.sha256, facts.size, facts.content_type,
                facts.upload_name, authenticated, facts.width, facts.height, facts.animated,
            )

    async def insert_pending(
        self, media_id: str, user_id: str, *, authenticated: bool, now_ms: int, expires_ts: int
    ) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_ts, authenticated)"
                " VALUES ($1, $2, $3, $4, $5)",
                media_id, user_id, now_ms, expires_ts, authenticated,
            )

    async def complete_pending(self, media_id: str, facts: ContentFacts, now_ms: int) -> None:
        """Give a created media ID its content; MediaConflict if it has some or has expired."""
        async with self.db.connection() as conn:
            done = await conn.fetchval(
                "UPDATE local_media SET sha256 = $2, size = $3, content_type = $4, upload_name = $5,"
                " uploaded_ts = $6, width = $7, height = $8, animated = $9, unused_expires_ts = NULL"
                " WHERE media_id = $1 AND sha256 IS NULL AND unused_expires_ts > $6"
                " RETURNING 1",
                media_id, facts.sha256, facts.size, facts.content_type, facts.upload_name, now_ms,
                facts.width, facts.height, facts.animated,
            )
        if not done:
            raise MediaConflict(media_id)

    async def count_pending(self, user_id: str, now_ms: int) -> int:
        async with self.db.connection() as conn:
            return int(await conn.fetchval(
                "SELECT count(*) FROM local_media"
                " WHERE user_id = $1 AND sha256 IS NULL AND unused_expires_ts > $2",
                user_id, now_ms,
            ))

    async def delete_expired_pending(self, now_ms: int) -> int:
        async with self.db.connection() as conn:
            result = await conn.execute(
                "DELETE FROM local_media WHERE sha256 IS NULL AND unused_expires_ts <= $1", now_ms
            )
        return int(result.split()[-1])

    async def get_media(self, media_id: str) -> MediaRow | None:
        async with self.db.connection() as conn:
            return _media(await conn.fetchrow(
                f"SELECT {_MEDIA_COLUMNS} FROM local_media WHERE media_id = $1", media_id
            ))

    async def mark_thumbnail_failed(self, media_sha256: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE local_media SET thumbnail_failed = TRUE WHERE sha256 = $1", media_sha256
            )

    async def sha256_in_use(self, sha256: str) -> bool:
        """Whether any media row or thumbnail refers to this content."""
        async with self.db.connection() as conn:
            return bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM local_media WHERE sha256 = $1)"
                " OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)",
                sha256,
            ))

    # -- quarantine ------------------------------------------------------
    async def quarantine_media_ids(
        self, media_ids: list[str], by: str, now_ms: int, *, quarantine: bool = True
    ) -> int:
        async with self.db.connection() as conn:
            if quarantine:
                result = await conn.execute(
                    "UPDATE local_media SET quarantined_by = $2, quarantined_ts = $3"
                    " WHERE media_id = ANY($1::text[]) AND quarantined_ts IS NULL",
                    media_ids, by, now_ms,
                )
            else:
                result = await conn.execute(
                    "UPDATE local_media SET quarantined_by = NULL, quarantined_ts = NULL"
                    " WHERE media_id = ANY($1::text[]) AND quarantined_ts IS NOT NULL",
                    media_ids,
                )
        return int(result.split()[-1])

    async def media_ids_of_user(self, user_id: str) -> list[str]:
        async with self.db.connection() as conn:
            rows = await conn.fetch("SELECT media_id FROM local_media WHERE user_id = $1", user_id)
        return [r["media_id"] for r in rows]

    async def media_ids_in_room_events(self, room_id: str, server_name: str) -> list[str]:
        """Local media IDs named by `mxc://` URLs anywhere in a room's stored events (`events.json`)."""
        pattern = re.compile(r"mxc://" + re.escape(server_name) + r"/([A-Za-z0-9_-]+)")
        found: set[str] = set()
        async with self.db.connection() as conn, conn.transaction():
            async for row in conn.cursor(
                "SELECT json FROM events WHERE room_id = $1 AND json LIKE '%mxc://%'", room_id
            ):
                found.update(pattern.findall(row["json"]))
        return sorted(found)

    # -- thumbnails ------------------------------------------------------
    async def thumbnails_for(self, source_sha256: str) -> list[ThumbnailRow]:
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_THUMB_COLUMNS} FROM media_thumbnails WHERE source_sha256 = $1", source_sha256
            )
        return [ThumbnailRow(**dict(r)) for r in rows]

    async def insert_thumbnail(self, thumb: ThumbnailRow, now_ms: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                f"INSERT INTO media_thumbnails ({_THUMB_COLUMNS}, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT DO NOTHING",
                thumb.source_sha256, thumb.method, thumb.box_width, thumb.box_height, thumb.animated,
                thumb.width, thumb.height, thumb.content_type, thumb.sha256, thumb.size, now_ms,
            )
