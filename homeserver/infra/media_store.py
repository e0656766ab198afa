"""Where media bytes live: a content-addressed object store with a filesystem and an S3 backend.

Objects are named by the hex SHA-256 of their bytes, so a given content is
stored once however many media IDs refer to it, and a stored object never
changes. Uploads are first written to a local staging file (see
`staging_dir`), hashed while they stream in; `put` then makes that file
durable under its key. After `put` returns, the object survives a crash;
before, nothing visible exists (a staging file left by a crash is removed by
`clean_staging` at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
_KEY = re.compile(r"^[0-9a-f]{64}$")
STAGING_PREFIX = "upload-"


class ObjectMissing(Exception):
    """No object is stored under this key."""


class MediaStoreUnavailable(Exception):
    """The backend failed (disk error, S3 unreachable or refusing): not the caller's fault."""


@dataclass
class StoredObject:
    size: int
    chunks: AsyncIterator[bytes]


class MediaStore(Protocol):
    """The small interface the media service uses; both backends implement it."""

    staging_dir: Path

    async def put(self, key: str, staged: Path) -> None:
        """Store the staged file durably under `key`. May consume (move) the file."""

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` durably under `key` (thumbnails)."""

    async def open(self, key: str) -> StoredObject:
        """The object's size and an iterator over its bytes; ObjectMissing if absent."""

    async def read(self, key: str) -> bytes:
        """The whole object; ObjectMissing if absent."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"not a content key: {key!r}")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_staging_file(staging_dir: Path) -> tuple[int, Path]:
    """A fresh staging file (fd, path) for one upload."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name so start-up cleaning spares other live workers' files.
    fd, name = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=staging_dir)
    return fd, Path(name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_staging(staging_dir: Path) -> int:
    """Remove staging files of uploads a crash interrupted (their writer process is gone)."""
    removed = 0
    if not staging_dir.is_dir():
        return 0
    for entry in staging_dir.iterdir():
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_file():
            continue
        pid_text = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed += 1
    return removed


class FilesystemMediaStore:
    """Objects under `<root>/content/ab/cd/<sha256>`; staging files in `<root>/tmp` (same filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content_dir = root / "content"
        self.staging_dir = root / "tmp"
        self.content_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        _check_key(key)
        return self.content_dir / key[0:2] / key[2:4] / key

    def _put_sync(self, key: str, staged: Path) -> None:
        target = self.path_for(key)
        if target.exists():
            # Identical content is already stored (and was made durable when it was).
            staged.unlink(missing_ok=True)
            return
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        created: list[Path] = []
        for parent in (target.parent.parent, target.parent):
            if not parent.exists():
                parent.mkdir(exist_ok=True)
                created.append(parent)
        os.replace(staged, target)
        # The rename and any new directories are durable only once their directories are synced.
        _fsync_dir(target.parent)
        for d in reversed(created):
            _fsync_dir(d.parent)
        _fsync_dir(self.staging_dir)

    async def put(self, key: str, staged: Path) -> None:
        try:
            await asyncio.to_thread(self._put_sync, key, staged)
        except OSError as e:
            raise MediaStoreUnavailable(f"storing {key}: {e}") from e

    def _put_bytes_sync(self, key: str, data: bytes) -> None:
        if self.path_for(key).exists():
            return
        fd, staged = new_staging_file(self.staging_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._put_sync(key, staged)
        finally:
            staged.unlink(missing_ok=True)

    async def put_bytes(self, key: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._put_bytes_sync, key, data)
        except OSError as e:
            raise MediaStoreUnavailable(f"storing {key}: {e}") from e

    async def open(self, key: str) -> StoredObject:
        path = self.path_for(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as e:
            raise MediaStoreUnavailable(f"opening {key}: {e}") from e
        size = os.fstat(f.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await asyncio.to_thread(f.read, CHUNK_SIZE)
                    if not chunk:
                        return
                    yield chunk
            finally:
                f.close()

        return StoredObject(size=size, chunks=chunks())

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path_for(key).read_bytes)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as e:
            raise MediaStoreUnavailable(f"reading {key}: {e}") from e

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).exists)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, True)

    async def close(self) -> None:
        return None


class S3MediaStore:
    """Objects at `<prefix><sha256>` in one bucket of an S3-compatible service (aioboto3).

    Credentials come from the config when given, else from the standard AWS
    chain (environment, shared files, instance roles). Staging files are local.
    """

    def __init__(
        self,
        *,
        bucket: str,
        staging_dir: Path,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.staging_dir = staging_dir
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._client_args: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": region}
        if access_key_id and secret_access_key:
            self._client_args["aws_access_key_id"] = access_key_id
            self._client_args["aws_secret_access_key"] = secret_access_key
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                import aioboto3
                from botocore.config import Config as BotoConfig

                # Checksums only where S3 requires them: S3-compatible servers differ in what they accept.
                boto_config = BotoConfig(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    retries={"max_attempts": 3, "mode": "standard"},
                )
                stack = contextlib.AsyncExitStack()
                session = aioboto3.Session()
                self._client = await stack.enter_async_context(
                    session.client("s3", config=boto_config, **self._client_args)
                )
                self._stack = stack
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    @staticmethod
    def _is_missing(e: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(e, ClientError):
            return False
        code = str(e.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    async def put(self, key: str, staged: Path) -> None:
        if await self.exists(key):
            return
        data = await asyncio.to_thread(staged.read_bytes)
        await self.put_bytes(key, data)

    async def put_bytes(self, key: str, data: bytes) -> None:
        try:
            s3 = await self._s3()
            await s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as e:
            raise MediaStoreUnavailable(f"S3 put {key}: {e}") from e

    async def open(self, key: str) -> StoredObject:
        try:
            s3 = await self._s3()
            resp = await s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            if self._is_missing(e):
                raise ObjectMissing(key) from None
            raise MediaStoreUnavailable(f"S3 get {key}: {e}") from e
        body = resp["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in body.iter_chunks(CHUNK_SIZE):
                    yield chunk
            finally:
                body.close()

        return StoredObject(size=int(resp["ContentLength"]), chunks=chunks())

    async def read(self, key: str) -> bytes:
        obj = await self.open(key)
        return b"".join([c async for c in obj.chunks])

    async def exists(self, key: str) -> bool:
        try:
            s3 = await self._s3()
            await s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as e:
            if self._is_missing(e):
                return False
            raise MediaStoreUnavailable(f"S3 head {key}: {e}") from e

    async def delete(self, key: str) -> None:
        try:
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise MediaStoreUnavailable(f"S3 delete {key}: {e}") from e

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None


def open_media_store(config: Any) -> MediaStore:
    """The backend `media.store` names, configured from `media.*`."""
    kind = str(config.get("media.store", "filesystem"))
    root = config.path("media.path")
    if kind == "filesystem":
        return FilesystemMediaStore(root)
    if kind == "s3":
        s3 = config.get("media.s3") or {}
        bucket = s3.get("bucket")
        if not bucket:
            raise ValueError("media.store is s3 but media.s3.bucket is not set")
        return S3MediaStore(
            bucket=str(bucket),
            staging_dir=root / "tmp",
            prefix=str(s3.get("prefix") or ""),
            endpoint_url=s3.get("endpoint_url") or None,
            region=s3.get("region") or None,
            access_key_id=s3.get("access_key_id") or None,
            secret_access_key=s3.get("secret_access_key") or None,
        )
    raise ValueError(f"unknown media.store {kind!r} (filesystem | s3)")
