"""Media survive restarts; interrupted uploads and crashes leave nothing behind; the quarantine CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import auth_header
from tests.integration import media_helpers
from tests.integration.media_helpers import (
    image_bytes,
    list_s3_objects,
    media_sets,
    new_user,
    open_image,
    thumbnail,
    upload,
    wait_until,
)

# Fixtures shared with the other media tests (not in a conftest, to keep other packages unaffected).
media_backend = media_helpers.media_backend
s3_service = media_helpers.s3_service

REPO = Path(__file__).resolve().parents[2]


async def count_media_rows(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM local_media"))
    finally:
        await conn.close()


async def test_media_survive_a_restart(server_factory: Any, media_backend: dict[str, Any], tmp_path: Path) -> None:
    sets = media_sets(media_backend, **{"media.path": str(tmp_path / "media")})
    first = await server_factory(sets)
    png = image_bytes((400, 300))
    async with first.client() as c:
        token = await new_user(c, "alice")
        sn, image_id = await upload(c, token, png, "image/png", filename="a.png")
        _, text_id = await upload(c, token, b"words", "text/plain")
    await first.services.media.wait_for_background()
    await first.stop()

    second = await server_factory(sets, db_url=first.db_url)
    async with second.client() as c:
        r = await c.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "correct horse",
        })
        token = r.json()["access_token"]
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{image_id}", headers=auth_header(token))
        assert r.status_code == 200 and r.content == png
        assert r.headers["content-disposition"] == 'inline; filename="a.png"'
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{text_id}", headers=auth_header(token))
        assert r.content == b"words"
        r = await thumbnail(c, token, sn, image_id, width=96, height=96, method="crop")
        assert r.status_code == 200 and open_image(r.content).size == (96, 96)


async def test_interrupted_upload_leaves_nothing_behind(
    server_factory: Any, media_backend: dict[str, Any], tmp_path: Path
) -> None:
    media_dir = tmp_path / "media"
    srv = await server_factory(media_sets(media_backend, **{"media.path": str(media_dir)}))
    staging = media_dir / "tmp"
    async with srv.client() as c:
        token = await new_user(c)
    declared = 4 * 1024 * 1024
    head = (
        "POST /_matrix/media/v3/upload?filename=half.bin HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(head + b"\x07" * (declared // 2))
    await writer.drain()
    # The server is receiving: its staging file exists and holds part of the body.
    await wait_until(lambda: any(p.stat().st_size > 0 for p in staging.glob("upload-*")))
    writer.close()
    await wait_until(lambda: not any(staging.glob("upload-*")))
    await asyncio.sleep(0.2)
    assert await count_media_rows(srv.db_url) == 0
    assert not [p for p in staging.iterdir()]
    content = media_dir / "content"
    assert not content.exists() or not [p for p in content.rglob("*") if p.is_file()]
    if media_backend["media.store"] == "s3":
        assert await list_s3_objects(media_backend) == []
    # The server is fine afterwards.
    async with srv.client() as c:
        sn, mid = await upload(c, token, b"after")
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
        assert r.content == b"after"


async def test_staging_files_left_by_a_crash_are_removed_at_start(server_factory: Any, tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    staging = media_dir / "tmp"
    staging.mkdir(parents=True)
    dead = staging / "upload-999999999-abcdef"  # beyond any pid_max: its writer is gone
    dead.write_bytes(b"half an upload")
    live = staging / f"upload-{os.getpid()}-ghijkl"  # a live worker's upload in progress
    live.write_bytes(b"busy")
    await server_factory({"rate_limits.enabled": False, "media.path": str(media_dir)})
    assert not dead.exists()
    assert live.exists()
    live.unlink()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )


async def test_quarantine_cli(server_factory: Any, tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    srv = await server_factory({"rate_limits.enabled": False, "media.path": str(media_dir)})
    async with srv.client() as c:
        alice = await new_user(c, "alice")
        bob = await new_user(c, "bob")
        sn, a1 = await upload(c, alice, b"alice one", "text/plain")
        _, b1 = await upload(c, bob, b"bob one", "text/plain")
        _, b2 = await upload(c, bob, b"bob two", "text/plain")
        _, in_room = await upload(c, alice, b"in a room", "text/plain")
        room_id = await create_room(c, alice)
        await send_image(c, alice, room_id, f"mxc://{sn}/{in_room}", "cli1")

    common = ["--data-dir", str(tmp_path / "cli"), "--set", f"database.url={srv.db_url}",
              "--set", f"media.path={media_dir}"]
    done = await asyncio.to_thread(run_cli, "quarantine-media", *common, "--media-id", f"mxc://{sn}/{a1}")
    assert done.returncode == 0, done.stderr
    assert "quarantined 1 media" in done.stdout
    done = await asyncio.to_thread(run_cli, "quarantine-media", *common, "--user", "@bob:localhost")
    assert done.returncode == 0 and "quarantined 2 media" in done.stdout, done.stderr
    done = await asyncio.to_thread(run_cli, "quarantine-media", *common, "--media-id", "not/valid")
    assert done.returncode == 1 and "error" in done.stderr

    async with srv.client() as c:
        for mid in (a1, b1, b2):
            r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(alice))
            assert r.status_code == 404, mid

    done = await asyncio.to_thread(run_cli, "quarantine-media", *common, "--room", "!nosuchroom:localhost")
    assert done.returncode == 0 and "quarantined 0 media" in done.stdout, (done.stdout, done.stderr)
    done = await asyncio.to_thread(run_cli, "quarantine-media", *common, "--room", room_id)
    assert done.returncode == 0 and "quarantined 1 media" in done.stdout, (done.stdout, done.stderr)
    async with srv.client() as c:
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{in_room}", headers=auth_header(alice))
        assert r.status_code == 404


async def create_room(c: Any, token: str) -> str:
    r = await c.post("/_matrix/client/v3/createRoom", json={"preset": "private_chat"}, headers=auth_header(token))
    assert r.status_code == 200, r.text
    return str(r.json()["room_id"])


async def send_image(c: Any, token: str, room_id: str, mxc: str, txn: str) -> None:
    r = await c.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.image", "body": "picture.png", "url": mxc, "info": {"mimetype": "image/png"}},
        headers=auth_header(token),
    )
    assert r.status_code == 200, r.text


async def test_quarantine_by_room_with_real_rooms(server_factory: Any, tmp_path: Path) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "media.path": str(tmp_path / "media")})
    url = "/_parley/admin/v1/media/quarantine"
    async with srv.client() as c:
        admin = await new_user(c, "admin")
        await srv.services.account_store.set_admin("@admin:localhost", True)
        alice = await new_user(c, "alice")
        png = image_bytes((64, 48))
        sn, bad = await upload(c, alice, png, "image/png", filename="bad.png")
        _, good = await upload(c, alice, image_bytes((64, 48), color="blue"), "image/png", filename="good.png")
        _, unsent = await upload(c, alice, b"never sent anywhere", "text/plain")

        bad_room = await create_room(c, alice)
        good_room = await create_room(c, alice)
        await send_image(c, alice, bad_room, f"mxc://{sn}/{bad}", "t1")
        # A remote server's URL in the same room is not ours to quarantine; it must not break the scan.
        await send_image(c, alice, bad_room, "mxc://elsewhere.org/remoteMedia", "t2")
        await send_image(c, alice, good_room, f"mxc://{sn}/{good}", "t3")

        r = await c.post(url, json={"room_id": bad_room}, headers=auth_header(alice))
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"

        r = await c.post(url, json={"room_id": bad_room}, headers=auth_header(admin))
        assert r.status_code == 200, r.text
        assert r.json() == {"num_quarantined": 1}

        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{bad}", headers=auth_header(alice))
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.get(f"/_matrix/client/v1/media/thumbnail/{sn}/{bad}?width=32&height=32", headers=auth_header(alice))
        assert r.status_code == 404
        for mid, body in ((good, None), (unsent, b"never sent anywhere")):
            r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(alice))
            assert r.status_code == 200, mid
            if body is not None:
                assert r.content == body

        # Quarantining the same room again changes nothing; releasing it brings the media back.
        r = await c.post(url, json={"room_id": bad_room}, headers=auth_header(admin))
        assert r.json() == {"num_quarantined": 0}
        r = await c.post(url, json={"room_id": bad_room, "quarantine": False}, headers=auth_header(admin))
        assert r.json() == {"num_quarantined": 1}
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{bad}", headers=auth_header(alice))
        assert r.status_code == 200 and r.content == png


async def test_an_unreachable_store_answers_503_and_stores_nothing(server_factory: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    media_dir = tmp_path / "media"
    srv = await server_factory({
        "rate_limits.enabled": False, "media.path": str(media_dir), "media.store": "s3",
        "media.s3.bucket": "nowhere", "media.s3.endpoint_url": f"http://127.0.0.1:{free_port()}",
        "media.s3.region": "us-east-1", "media.s3.access_key_id": "k", "media.s3.secret_access_key": "s",
    })
    async with srv.client() as c:
        token = await new_user(c)
        r = await c.post("/_matrix/media/v3/upload", content=b"data", headers=auth_header(token))
        assert r.status_code == 503, r.text
        assert r.json()["errcode"] == "M_UNKNOWN"
    assert await count_media_rows(srv.db_url) == 0
    assert not any((media_dir / "tmp").iterdir())
