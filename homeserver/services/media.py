"""The media repository: uploads (direct and asynchronous), downloads, thumbnails, quarantine.

An upload streams into a local staging file while it is counted and hashed;
nothing is visible until the whole body has arrived, its type is decided
(see media_types) and, for images, its header passed the pixel limit. Then,
shielded from client disconnects, the content is made durable in the media
store and only then the metadata row is committed: a 200 means both exist.
A body that stops early or grows past the limit leaves nothing behind.

Thumbnails belong to the content (its SHA-256), so identical uploads share
them. The spec's five common sizes are made in the background after an image
upload; a request for another size first tries the smallest existing
thumbnail at least as large as asked, then makes and caches one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from homeserver import errors
from homeserver.config import Config
from homeserver.infra.media_store import (
    MediaStore,
    MediaStoreUnavailable,
    ObjectMissing,
    StoredObject,
    new_staging_file,
)
from homeserver.infra.ratelimit import RateLimiter
from homeserver.services import media_types, thumbnailer
from homeserver.services.auth import Requester
from homeserver.services.thumbnailer import ThumbnailSpec
from homeserver.storage.media import ContentFacts, MediaConflict, MediaRepositoryStore, MediaRow, ThumbnailRow

log = logging.getLogger(__name__)

MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# A server name: a DNS name, IPv4 literal or [IPv6] literal, optional port (appendices#server-name).
SERVER_NAME_RE = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?$")

# The spec's recommended pre-generated thumbnails.
COMMON_THUMBNAILS = (
    ThumbnailSpec("crop", 32, 32, False),
    ThumbnailSpec("crop", 96, 96, False),
    ThumbnailSpec("scale", 320, 240, False),
    ThumbnailSpec("scale", 640, 480, False),
    ThumbnailSpec("scale", 800, 600, False),
)
MAX_THUMBNAIL_DIMENSION = 10_000
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000
UNUSED_EXPIRY_MS = 24 * 3600 * 1000
MAX_PENDING_PER_USER = 100
# Writes of the staging file are batched into a worker thread this large.
WRITE_BATCH = 1024 * 1024
SNIFF_BYTES = 64


def now_ms() -> int:
    return int(time.time() * 1000)


def not_yet_uploaded() -> errors.MatrixError:
    return errors.MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")


def cannot_overwrite() -> errors.MatrixError:
    return errors.MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")


def store_unavailable() -> errors.MatrixError:
    return errors.MatrixError(503, "M_UNKNOWN", "The media store is unavailable, try again later")


def cannot_thumbnail() -> errors.MatrixError:
    return errors.MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")


@dataclass
class Download:
    """Content ready to stream to a client."""

    content_type: str
    size: int
    chunks: AsyncIterator[bytes]
    disposition: str


@dataclass
class _Staged:
    """An upload received into a staging file, not yet stored."""

    path: Path
    facts: ContentFacts


class RemoteMedia(Protocol):
    """Fetching media of other servers (federation). Until it exists, every remote media is unknown."""

    async def download(self, server_name: str, media_id: str, timeout_ms: int) -> Download: ...

    async def thumbnail(
        self, server_name: str, media_id: str, spec: ThumbnailSpec, timeout_ms: int
    ) -> Download: ...


class NoRemoteMedia:
    async def download(self, server_name: str, media_id: str, timeout_ms: int) -> Download:
        raise errors.not_found("Remote media is not available")

    async def thumbnail(
        self, server_name: str, media_id: str, spec: ThumbnailSpec, timeout_ms: int
    ) -> Download:
        raise errors.not_found("Remote media is not available")


class MediaService:
    def __init__(
        self,
        config: Config,
        store: MediaRepositoryStore,
        blobs: MediaStore,
        limiter: RateLimiter,
        remote: RemoteMedia | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.limiter = limiter
        self.remote: RemoteMedia = remote or NoRemoteMedia()
        self.server_name = config.server_name
        self.max_upload_size = int(config.get("media.max_upload_size"))
        self.max_image_pixels = int(config.get("media.max_image_pixels"))
        self.freeze_unauthenticated = bool(config.get("media.freeze_unauthenticated"))
        self._upload_rule = config.rate_rule("uploads_per_user")
        # Image work runs in threads; bound how many decode at once (memory).
        self._image_slots = asyncio.Semaphore(max(1, min(4, (os.cpu_count() or 2))))
        self._background: set[asyncio.Task[None]] = set()
        self._inflight: dict[tuple[str, ThumbnailSpec], asyncio.Future[ThumbnailRow | None]] = {}
        self._upload_waiters: dict[str, asyncio.Event] = {}

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        await self.blobs.close()

    # -- configuration ---------------------------------------------------
    def public_config(self) -> dict[str, int]:
        return {"m.upload.size": self.max_upload_size}

    def mxc(self, media_id: str) -> str:
        return f"mxc://{self.server_name}/{media_id}"

    # -- uploads -----------------------------------------------------------
    async def _take_upload_slot(self, who: Requester) -> None:
        wait = await self.limiter.take(f"upload:{who.user_id}", self._upload_rule)
        if wait:
            raise errors.limit_exceeded(wait)

    def _check_upload_args(self, content_length: int | None, filename: str | None) -> None:
        if filename is not None and not media_types.valid_upload_name(filename):
            raise errors.invalid_param("filename must be 1-255 characters without control characters")
        if content_length is not None and content_length > self.max_upload_size:
            raise errors.too_large(f"Upload is larger than {self.max_upload_size} bytes")

    async def upload(
        self,
        who: Requester,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> str:
        """POST /upload: store the body, return its mxc:// URI."""
        self._check_upload_args(content_length, filename)
        await self._take_upload_slot(who)
        media_id = secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")
        staged = await self._receive(body, content_length, content_type, filename)

        async def commit(facts: ContentFacts) -> None:
            await self.store.insert_uploaded(
                media_id, who.user_id, facts, authenticated=self.freeze_unauthenticated, now_ms=now_ms()
            )

        await self._finish(staged, commit)
        return self.mxc(media_id)

    async def create(self, who: Requester) -> dict[str, object]:
        """POST /media/v1/create: reserve a media ID for an upload to come."""
        await self._take_upload_slot(who)
        now = now_ms()
        # Forget IDs whose upload never came (cheap: a partial index covers pending rows).
        await self.store.delete_expired_pending(now)
        if await self.store.count_pending(who.user_id, now) >= MAX_PENDING_PER_USER:
            raise errors.MatrixError(
                429, "M_LIMIT_EXCEEDED", "Too many pending uploads", retry_after_ms=60_000
            )
        media_id = secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")
        expires = now + UNUSED_EXPIRY_MS
        await self.store.insert_pending(
            media_id, who.user_id, authenticated=self.freeze_unauthenticated, now_ms=now, expires_ts=expires
        )
        return {"content_uri": self.mxc(media_id), "unused_expires_at": expires}

    async def upload_to(
        self,
        who: Requester,
        server_name: str,
        media_id: str,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """PUT /upload/{serverName}/{mediaId}: the content of a created media ID."""
        if server_name != self.server_name or not MEDIA_ID_RE.match(media_id):
            raise errors.not_found("Unknown media ID")
        row = await self.store.get_media(media_id)
        if row is None or (not row.uploaded and (row.unused_expires_ts or 0) <= now_ms()):
            raise errors.not_found("Unknown media ID")
        if row.user_id != who.user_id:
            raise errors.forbidden("Only the creator of this media ID may upload to it")
        if row.uploaded:
            raise cannot_overwrite()
        self._check_upload_args(content_length, filename)
        await self._take_upload_slot(who)
        staged = await self._receive(body, content_length, content_type, filename)

        async def commit(facts: ContentFacts) -> None:
            try:
                await self.store.complete_pending(media_id, facts, now_ms())
            except MediaConflict:
                raise cannot_overwrite() from None
            waiter = self._upload_waiters.pop(media_id, None)
            if waiter is not None:
                waiter.set()

        await self._finish(staged, commit)

    async def _receive(
        self, body: AsyncIterator[bytes], content_length: int | None, declared: str | None, filename: str | None
    ) -> _Staged:
        """Stream the body into a staging file; decide its type. Removes the file on any failure."""
        try:
            fd, path = await asyncio.to_thread(new_staging_file, self.blobs.staging_dir)
        except OSError as e:
            log.error("cannot create a staging file: %s", e)
            raise store_unavailable() from None
        f = os.fdopen(fd, "wb")
        try:
            hasher = hashlib.sha256()
            size = 0
            head = b""
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in body:
                if not chunk:
                    continue
                size += len(chunk)
                if size > self.max_upload_size:
                    raise errors.too_large(f"Upload is larger than {self.max_upload_size} bytes")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                hasher.update(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH:
                    await asyncio.to_thread(f.writelines, pending)
                    pending, pending_size = [], 0
            if content_length is not None and size != content_length:
                raise errors.MatrixError(400, "M_UNKNOWN", "The body is shorter than its Content-Length")
            if pending:
                await asyncio.to_thread(f.writelines, pending)

            def flush_and_sync() -> None:
                f.flush()
                os.fsync(f.fileno())
                f.close()

            await asyncio.to_thread(flush_and_sync)
            content_type = media_types.stored_content_type(declared, head)
            width = height = None
            animated = False
            if content_type in media_types.THUMBNAILABLE:
                facts = await self._probe(path)
                if facts is not None:
                    width, height, animated = facts.width, facts.height, facts.animated
            return _Staged(
                path,
                ContentFacts(
                    sha256=hasher.hexdigest(),
                    size=size,
                    content_type=content_type,
                    upload_name=filename,
                    width=width,
                    height=height,
                    animated=animated,
                ),
            )
        except OSError as e:
            f.close()
            path.unlink(missing_ok=True)
            log.error("writing a staging file failed: %s", e)
            raise store_unavailable() from None
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            raise

    async def _probe(self, path: Path) -> thumbnailer.ImageFacts | None:
        """Image facts from the header; refuses an image over the pixel limit (decompression bomb)."""

        def work() -> thumbnailer.ImageFacts:
            return thumbnailer.probe(path.read_bytes(), self.max_image_pixels)

        try:
            async with self._image_slots:
                return await asyncio.to_thread(work)
        except thumbnailer.TooManyPixels:
            raise errors.MatrixError(
                400, "M_TOO_LARGE", f"Image has more than {self.max_image_pixels} pixels"
            ) from None
        except thumbnailer.CannotThumbnail:
            return None

    async def _finish(self, staged: _Staged, commit: Callable[[ContentFacts], Awaitable[None]]) -> None:
        """Make the content durable, then commit its row; runs to the end even if the client goes away."""

        async def work() -> None:
            try:
                try:
                    await self.blobs.put(staged.facts.sha256, staged.path)
                except MediaStoreUnavailable as e:
                    log.error("%s", e)
                    raise store_unavailable() from None
                await commit(staged.facts)
            finally:
                await asyncio.to_thread(staged.path.unlink, True)
            if staged.facts.width is not None:
                self._spawn(self._pregenerate(staged.facts.sha256, staged.facts))

        task = asyncio.ensure_future(work())
        self._background.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._background.discard)  # type: ignore[arg-type]
        await asyncio.shield(task)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._background.discard)  # type: ignore[arg-type]

    # -- reading -------------------------------------------------------------
    def _parse_timeout(self, timeout_ms: int | None) -> int:
        if timeout_ms is None:
            return DEFAULT_TIMEOUT_MS
        return max(0, min(timeout_ms, MAX_TIMEOUT_MS))

    async def _local_media(self, media_id: str, *, authenticated: bool, timeout_ms: int) -> MediaRow:
        """The uploaded media row, waiting for an asynchronous upload up to the timeout."""
        if not MEDIA_ID_RE.match(media_id):
            raise errors.not_found()
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            row = await self.store.get_media(media_id)
            if row is None or row.quarantined:
                raise errors.not_found()
            if not authenticated and row.authenticated:
                # Uploaded after unauthenticated media was frozen.
                raise errors.not_found()
            if row.uploaded:
                return row
            if (row.unused_expires_ts or 0) <= now_ms():
                raise errors.not_found()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._upload_waiters.pop(media_id, None)
                raise not_yet_uploaded()
            waiter = self._upload_waiters.setdefault(media_id, asyncio.Event())
            # Another worker process may complete it: look again at least every half second.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=min(remaining, 0.5))

    def _check_server_name(self, server_name: str) -> bool:
        """True if local; raises for malformed names."""
        if not SERVER_NAME_RE.match(server_name):
            raise errors.not_found()
        return server_name == self.server_name

    async def _open(self, sha256: str) -> StoredObject:
        try:
            return await self.blobs.open(sha256)
        except ObjectMissing:
            log.error("media content %s is missing from the store", sha256)
            raise errors.not_found() from None
        except MediaStoreUnavailable as e:
            log.error("%s", e)
            raise store_unavailable() from None

    async def download(
        self,
        server_name: str,
        media_id: str,
        *,
        authenticated: bool,
        timeout_ms: int | None = None,
        filename: str | None = None,
    ) -> Download:
        timeout = self._parse_timeout(timeout_ms)
        if not self._check_server_name(server_name):
            return await self.remote.download(server_name, media_id, timeout)
        row = await self._local_media(media_id, authenticated=authenticated, timeout_ms=timeout)
        assert row.sha256 is not None
        obj = await self._open(row.sha256)
        content_type = row.content_type or media_types.OCTET_STREAM
        name = filename if filename is not None else row.upload_name
        return Download(content_type, obj.size, obj.chunks, media_types.content_disposition(content_type, name))

    async def thumbnail(
        self,
        server_name: str,
        media_id: str,
        *,
        width: int,
        height: int,
        method: str,
        animated: bool | None,
        authenticated: bool,
        timeout_ms: int | None = None,
    ) -> Download:
        if not (0 < width <= MAX_THUMBNAIL_DIMENSION and 0 < height <= MAX_THUMBNAIL_DIMENSION):
            raise errors.invalid_param(f"width and height must be between 1 and {MAX_THUMBNAIL_DIMENSION}")
        if method not in ("crop", "scale"):
            raise errors.invalid_param("method must be 'crop' or 'scale'")
        timeout = self._parse_timeout(timeout_ms)
        if not self._check_server_name(server_name):
            spec = ThumbnailSpec(method, width, height, bool(animated))
            return await self.remote.thumbnail(server_name, media_id, spec, timeout)
        row = await self._local_media(media_id, authenticated=authenticated, timeout_ms=timeout)
        assert row.sha256 is not None
        if row.content_type not in media_types.THUMBNAILABLE or row.width is None or row.height is None:
            raise cannot_thumbnail()
        if row.width * row.height > self.max_image_pixels:
            raise errors.too_large("Content is too large to thumbnail")
        if row.thumbnail_failed:
            raise cannot_thumbnail()
        want_animated = bool(animated) and row.animated
        spec = ThumbnailSpec(method, width, height, want_animated)
        # Smaller than asked: the spec says to return the original rather than thumbnail it
        # (unless it is animated and animation was not asked for).
        if row.width <= width and row.height <= height and (want_animated or not row.animated):
            obj = await self._open(row.sha256)
            return Download(row.content_type, obj.size, obj.chunks, media_types.content_disposition(
                row.content_type, "thumbnail" + _extension(row.content_type), inline=True
            ))
        thumb = await self._find_or_make_thumbnail(row, spec)
        if thumb is None:
            raise cannot_thumbnail()
        obj = await self._open(thumb.sha256)
        return Download(thumb.content_type, obj.size, obj.chunks, media_types.content_disposition(
            thumb.content_type, "thumbnail" + _extension(thumb.content_type), inline=True
        ))

    # -- thumbnails ------------------------------------------------------------
    @staticmethod
    def _choose(thumbs: list[ThumbnailRow], spec: ThumbnailSpec) -> ThumbnailRow | None:
        """The smallest existing thumbnail made for a box at least as large as the one asked for."""
        fitting = [
            t for t in thumbs
            if t.animated == spec.animated
            # A crop must also keep the asked-for aspect ratio.
            and MediaService._fits(ThumbnailSpec(t.method, t.box_width, t.box_height, t.animated), spec)
        ]
        return min(fitting, key=lambda t: (t.width * t.height, t.box_width * t.box_height), default=None)

    @staticmethod
    def _fits(candidate: ThumbnailSpec, spec: ThumbnailSpec) -> bool:
        return (
            candidate.method == spec.method
            and candidate.box_width >= spec.box_width
            and candidate.box_height >= spec.box_height
            and (spec.method != "crop" or candidate.box_width * spec.box_height == candidate.box_height * spec.box_width)
        )

    def _on_demand_spec(self, spec: ThumbnailSpec) -> ThumbnailSpec:
        """What to make for a request no existing thumbnail serves.

        A common size that would serve it (its pre-generation may still be running, or
        it failed) is made as that common size; otherwise a "scale" box is rounded up to
        a multiple of 32, which bounds how many variants one image can be asked for.
        """
        common = [c for c in COMMON_THUMBNAILS if self._fits(c, spec)]
        if common:
            best = min(common, key=lambda c: c.box_width * c.box_height)
            return ThumbnailSpec(best.method, best.box_width, best.box_height, spec.animated)
        if spec.method == "scale":
            return ThumbnailSpec("scale", _round_up(spec.box_width, 32), _round_up(spec.box_height, 32), spec.animated)
        return spec

    async def _find_or_make_thumbnail(self, row: MediaRow, spec: ThumbnailSpec) -> ThumbnailRow | None:
        assert row.sha256 is not None
        existing = self._choose(await self.store.thumbnails_for(row.sha256), spec)
        if existing is not None:
            return existing
        spec = self._on_demand_spec(spec)
        key = (row.sha256, spec)
        task = self._inflight.get(key)
        if task is None:
            # One generation per thumbnail however many ask; it is not tied to any one request,
            # so a client going away does not cancel it for the others.
            sha256 = row.sha256

            async def make() -> ThumbnailRow | None:
                try:
                    made = await self._make_thumbnails(sha256, [spec])
                    return made[0] if made else None
                finally:
                    self._inflight.pop(key, None)

            task = asyncio.ensure_future(make())
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _make_thumbnails(self, sha256: str, specs: list[ThumbnailSpec]) -> list[ThumbnailRow]:
        """Make, store and record thumbnails; [] (and the content marked) if it cannot be decoded."""
        try:
            data = await self.blobs.read(sha256)
        except ObjectMissing:
            log.error("media content %s is missing from the store", sha256)
            return []
        except MediaStoreUnavailable as e:
            log.error("%s", e)
            raise store_unavailable() from None
        try:
            async with self._image_slots:
                made = await asyncio.to_thread(thumbnailer.make_thumbnails, data, specs, self.max_image_pixels)
        except (thumbnailer.CannotThumbnail, thumbnailer.TooManyPixels) as e:
            log.info("cannot thumbnail %s: %s", sha256, e)
            await self.store.mark_thumbnail_failed(sha256)
            return []
        rows = []
        for t in made:
            thumb_sha = hashlib.sha256(t.data).hexdigest()
            try:
                await self.blobs.put_bytes(thumb_sha, t.data)
            except MediaStoreUnavailable as e:
                log.error("%s", e)
                raise store_unavailable() from None
            thumb = ThumbnailRow(
                source_sha256=sha256, method=t.spec.method, box_width=t.spec.box_width,
                box_height=t.spec.box_height, animated=t.spec.animated, width=t.width, height=t.height,
                content_type=t.content_type, sha256=thumb_sha, size=len(t.data),
            )
            await self.store.insert_thumbnail(thumb, now_ms())
            rows.append(thumb)
        return rows

    async def _pregenerate(self, sha256: str, facts: ContentFacts) -> None:
        try:
            have = {(t.method, t.box_width, t.box_height, t.animated) for t in await self.store.thumbnails_for(sha256)}
            specs = [s for s in COMMON_THUMBNAILS if (s.method, s.box_width, s.box_height, s.animated) not in have]
            await self._make_thumbnails(sha256, specs)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pre-generating thumbnails of %s failed", sha256)

    async def wait_for_background(self) -> None:
        """Wait until background work (thumbnail pre-generation) is done. For tests and benchmarks."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- quarantine --------------------------------------------------------------
    async def quarantine(
        self,
        *,
        by: str,
        media_ids: list[str] | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        quarantine: bool = True,
    ) -> int:
        """Quarantine (or release) local media; returns how many media IDs changed."""
        ids: set[str] = set()
        for ref in media_ids or []:
            ids.add(self._local_media_id(ref))
        if user_id is not None:
            ids.update(await self.store.media_ids_of_user(user_id))
        if room_id is not None:
            ids.update(await self.store.media_ids_in_room_events(room_id, self.server_name))
        if not ids:
            return 0
        return await self.store.quarantine_media_ids(sorted(ids), by, now_ms(), quarantine=quarantine)

    def _local_media_id(self, ref: str) -> str:
        """A media ID, or an mxc:// URI of this server."""
        if ref.startswith("mxc://"):
            server, _, media_id = ref[len("mxc://"):].partition("/")
            if server != self.server_name:
                raise errors.invalid_param(f"{ref} is not media of this server")
            ref = media_id
        if not MEDIA_ID_RE.match(ref):
            raise errors.invalid_param(f"not a media ID: {ref!r}")
        return ref


def _round_up(value: int, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _extension(content_type: str) -> str:
    return {
        "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
    }.get(content_type, "")
