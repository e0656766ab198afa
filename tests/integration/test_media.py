"""The content repository over real HTTP, against both media stores (filesystem and a real S3 server)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import asyncpg
import pytest
from PIL import Image

from tests.conftest import auth_header
from tests.integration import media_helpers
from tests.integration.media_helpers import (
    animated_gif,
    image_bytes,
    media_sets,
    new_user,
    open_image,
    thumbnail,
    upload,
)

# Fixtures shared with the other media tests (not in a conftest, to keep other packages unaffected).
media_backend = media_helpers.media_backend
s3_service = media_helpers.s3_service

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "cross-origin",
}


@pytest.fixture
async def media_server(server_factory: Any, media_backend: dict[str, Any]) -> Any:
    return await server_factory(media_sets(media_backend))


# -- upload and download -------------------------------------------------------
async def test_upload_then_download_through_both_endpoint_families(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        data = image_bytes((64, 48))
        server_name, media_id = await upload(c, token, data, "image/png", filename="cat picture.png")
        assert server_name == "localhost"
        paths = [
            (f"/_matrix/client/v1/media/download/{server_name}/{media_id}", True),
            (f"/_matrix/media/v3/download/{server_name}/{media_id}", False),
            (f"/_matrix/media/r0/download/{server_name}/{media_id}", False),
        ]
        for path, authed in paths:
            r = await c.get(path, headers=auth_header(token) if authed else {})
            assert r.status_code == 200, (path, r.text)
            assert r.content == data
            assert r.headers["content-type"] == "image/png"
            assert r.headers["content-disposition"] == 'inline; filename="cat picture.png"'
            assert r.headers["content-length"] == str(len(data))
            for name, value in SECURITY_HEADERS.items():
                assert r.headers[name] == value
            csp = r.headers["content-security-policy"]
            assert "sandbox" in csp and "default-src 'none'" in csp and "script-src 'none'" in csp
            assert "max-age=31536000" in r.headers["cache-control"]


async def test_download_file_name_override_is_encoded(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, b"hello", "text/plain", filename="notes.txt")
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}/r%C3%A9sum%C3%A9.txt", headers=auth_header(token))
        assert r.status_code == 200
        assert r.content == b"hello"
        assert r.headers["content-disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9.txt"


async def test_unsafe_types_are_attachments(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, b"<html><script>alert(1)</script></html>", "text/html", filename="x.html")
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-disposition"] == 'attachment; filename="x.html"'
        # No file name given: the disposition has none.
        sn, mid = await upload(c, token, b"\x00\x01", "application/x-thing")
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
        assert r.headers["content-disposition"] == "attachment"


async def test_content_type_is_checked_against_the_bytes(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        jpeg = image_bytes((20, 20), "JPEG")
        cases = [
            (jpeg, "image/png", "image/jpeg"),  # wrong image type: the bytes win
            (jpeg, "application/octet-stream", "image/jpeg"),
            (b"<html>not an image</html>", "image/png", "application/octet-stream"),
            (b"plain words", "text/plain; charset=utf-8", "text/plain; charset=utf-8"),
            (b"plain words", "this is not a type", "application/octet-stream"),
        ]
        for data, declared, stored in cases:
            sn, mid = await upload(c, token, data, declared)
            r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
            assert r.headers["content-type"] == stored, declared


async def test_identical_content_is_stored_once(server_factory: Any, tmp_path: Any) -> None:
    media_dir = tmp_path / "media"
    srv = await server_factory({"rate_limits.enabled": False, "media.path": str(media_dir)})
    async with srv.client() as c:
        token = await new_user(c)
        data = b"the same bytes" * 100
        _, first = await upload(c, token, data, "text/plain")
        _, second = await upload(c, token, data, "text/plain")
        assert first != second
        files = [p for p in (media_dir / "content").rglob("*") if p.is_file()]
        assert len(files) == 1 and files[0].read_bytes() == data


async def test_media_config(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config"):
            r = await c.get(path, headers=auth_header(token))
            assert r.status_code == 200
            assert r.json() == {"m.upload.size": 10 * 1024 * 1024}
        r = await c.get("/_matrix/client/v1/media/config")
        assert r.status_code == 401


async def test_authenticated_endpoints_need_a_token(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, b"x", "text/plain")
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}")
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
        r = await c.post("/_matrix/media/v3/upload", content=b"x")
        assert r.status_code == 401


async def test_unknown_bad_and_remote_media_are_not_found(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        for path in (
            "/_matrix/client/v1/media/download/localhost/doesNotExist",
            "/_matrix/client/v1/media/download/localhost/bad.id",
            "/_matrix/client/v1/media/download/other.example.org/someMedia",
            "/_matrix/client/v1/media/thumbnail/other.example.org/someMedia?width=32&height=32",
            "/_matrix/client/v1/media/download/bad%20server/someMedia",
        ):
            r = await c.get(path, headers=auth_header(token))
            assert r.status_code == 404, path
            assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_freeze_hides_new_media_from_unauthenticated_endpoints(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "media.freeze_unauthenticated": True})
    async with srv.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, image_bytes((40, 40)), "image/png")
        for path in (f"/_matrix/media/v3/download/{sn}/{mid}", f"/_matrix/media/r0/download/{sn}/{mid}",
                     f"/_matrix/media/v3/thumbnail/{sn}/{mid}?width=32&height=32"):
            r = await c.get(path)
            assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", path
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
        assert r.status_code == 200


async def test_media_from_before_the_freeze_stays_public(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "media.freeze_unauthenticated": False})
    async with srv.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, b"old media", "text/plain")
    await srv.stop()
    frozen = await server_factory(
        {"rate_limits.enabled": False, "media.freeze_unauthenticated": True,
         "media.path": str(srv.data_dir / "media")},
        db_url=srv.db_url,
    )
    async with frozen.client() as c:
        r = await c.get(f"/_matrix/media/v3/download/{sn}/{mid}")
        assert r.status_code == 200 and r.content == b"old media"


# -- limits ------------------------------------------------------------------------
async def raw_request(port: int, head: bytes, body_part: bytes, *, close_after: bool = False) -> bytes:
    """Send a request head and part of a body on a raw socket; return what the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        if close_after:
            return b""
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


async def test_upload_over_the_limit_is_refused(media_server: Any) -> None:
    limit = 10 * 1024 * 1024
    async with media_server.client() as c:
        token = await new_user(c)
        # Refused from the Content-Length alone: the answer comes with only 1 KB of the body sent.
        head = (
            "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {limit + 1}\r\n\r\n"
        ).encode()
        answer = await raw_request(media_server.port, head, b"\0" * 1024)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"M_TOO_LARGE" in answer

        # Chunked (no Content-Length): counted while streaming.
        async def chunked() -> Any:
            for _ in range(10):
                yield b"\0" * (1024 * 1024)
            yield b"\0"

        r = await c.post("/_matrix/media/v3/upload", content=chunked(), headers=auth_header(token))
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
        # Exactly at the limit is fine.
        sn, mid = await upload(c, token, b"\1" * limit)
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
        assert r.status_code == 200 and len(r.content) == limit
    conn = await asyncpg.connect(media_server.db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM local_media") == 1
    finally:
        await conn.close()


async def test_uploads_are_rate_limited(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.uploads_per_user": "{burst: 2, period_s: 600}"})
    async with srv.client() as c:
        token = await new_user(c)
        for _ in range(2):
            await upload(c, token, b"x")
        r = await c.post("/_matrix/media/v3/upload", content=b"x", headers=auth_header(token))
        assert r.status_code == 429
        assert r.json()["errcode"] == "M_LIMIT_EXCEEDED" and r.json()["retry_after_ms"] > 0


async def test_corrupt_image_is_stored_without_thumbnails(media_server: Any) -> None:
    good = image_bytes((300, 300), "PNG")
    truncated = good[: len(good) // 2]
    async with media_server.client() as c:
        token = await new_user(c)
        for data in (truncated, b"\x89PNG\r\n\x1a\n" + b"garbage" * 50):
            sn, mid = await upload(c, token, data, "image/png")
            r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(token))
            assert r.status_code == 200 and r.content == data
            assert r.headers["content-type"] == "image/png"
            for method in ("crop", "scale"):
                r = await thumbnail(c, token, sn, mid, width=32, height=32, method=method)
                assert r.status_code == 400, r.text
                assert r.json()["errcode"] == "M_UNKNOWN"
        await media_server.services.media.wait_for_background()


async def test_decompression_bomb_is_refused(media_server: Any) -> None:
    im = Image.new("1", (6000, 6000))  # 36 Mpx, above the 32 Mpx default; compresses to a few KB
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    async with media_server.client() as c:
        token = await new_user(c)
        r = await c.post("/_matrix/media/v3/upload", content=buf.getvalue(),
                         headers={**auth_header(token), "Content-Type": "image/png"})
        assert r.status_code == 400, r.text
        assert r.json()["errcode"] == "M_TOO_LARGE"
    conn = await asyncpg.connect(media_server.db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM local_media") == 0
    finally:
        await conn.close()


# -- thumbnails ----------------------------------------------------------------------
async def test_crop_thumbnails_have_exact_sizes(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, image_bytes((1200, 800), "JPEG", color="green"), "image/jpeg")
        for w, h in ((32, 32), (96, 96), (50, 30), (200, 300), (41, 41)):
            r = await thumbnail(c, token, sn, mid, width=w, height=h, method="crop")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "image/jpeg"
            assert r.headers["content-disposition"].startswith("inline")
            got = open_image(r.content).size
            if (w, h) == (41, 41):
                # Served from the pre-generated 96x96 crop: same aspect, at least as large.
                assert got[0] >= 41 and got[0] == got[1]
            else:
                assert got == (w, h)


async def test_scale_thumbnails_fit_the_box_and_keep_the_aspect(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, image_bytes((1200, 800), "PNG", color="blue"), "image/png")
        for w, h in ((320, 240), (640, 480), (800, 600), (100, 100), (1000, 50)):
            r = await thumbnail(c, token, sn, mid, width=w, height=h, method="scale")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "image/png"
            tw, th = open_image(r.content).size
            assert abs(tw / th - 1200 / 800) < 0.02, (w, h, tw, th)
            # Never smaller than asked (in the dimension that limits), never upscaled.
            assert tw <= 1200 and th <= 800
            assert tw >= min(w, 1200 * h / 800) - 1 and th >= min(h, 800 * w / 1200) - 1
            if (w, h) in ((320, 240), (640, 480), (800, 600)):
                assert tw <= w and th <= h
                assert tw == w or th == h


async def test_thumbnail_of_small_image_is_the_original(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        data = image_bytes((20, 10))
        sn, mid = await upload(c, token, data, "image/png")
        r = await thumbnail(c, token, sn, mid, width=96, height=96, method="crop")
        assert r.status_code == 200 and r.content == data


async def test_exif_rotated_input_comes_out_upright(media_server: Any) -> None:
    # 800x400 stored sideways: left half red, right half blue, orientation 6 ("rotate 90 CW to view").
    im = Image.new("RGB", (800, 400), "red")
    im.paste(Image.new("RGB", (400, 400), "blue"), (400, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, buf.getvalue(), "image/jpeg")
        r = await thumbnail(c, token, sn, mid, width=320, height=240, method="scale")
        assert r.status_code == 200
        thumb = open_image(r.content).convert("RGB")
        assert thumb.size == (120, 240)  # upright: 400 wide, 800 tall, scaled into 320x240
        top = thumb.getpixel((60, 30))
        bottom = thumb.getpixel((60, 210))
        assert top[0] > 200 and top[2] < 60, top  # red on top
        assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue below
        r = await thumbnail(c, token, sn, mid, width=32, height=64, method="crop")
        assert open_image(r.content).size == (32, 64)


async def test_animated_gif_thumbnails(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, animated_gif((200, 200)), "image/gif")
        r = await thumbnail(c, token, sn, mid, width=96, height=96, method="crop", animated="true")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/webp"
        anim = open_image(r.content)
        assert anim.size == (96, 96)
        assert getattr(anim, "is_animated", False) and anim.n_frames == 3
        colours = []
        for i in range(3):
            anim.seek(i)
            colours.append(anim.convert("RGB").getpixel((48, 48)))
        assert colours[0][0] > 200 and colours[1][1] > 100 and colours[2][2] > 200, colours
        for params in ({"animated": "false"}, {}):
            r = await thumbnail(c, token, sn, mid, width=96, height=96, method="crop", **params)
            assert r.status_code == 200
            assert not getattr(open_image(r.content), "is_animated", False)
        # animated=true on a still image behaves as animated=false.
        sn2, mid2 = await upload(c, token, image_bytes((200, 200)), "image/png")
        r = await thumbnail(c, token, sn2, mid2, width=96, height=96, method="crop", animated="true")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


async def test_thumbnail_parameters_are_validated(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        sn, mid = await upload(c, token, image_bytes((100, 100)), "image/png")
        cases = [
            ({"height": 32}, "M_MISSING_PARAM"),
            ({"width": "abc", "height": 32}, "M_INVALID_PARAM"),
            ({"width": -5, "height": 32}, "M_INVALID_PARAM"),
            ({"width": 32, "height": 32, "method": "stretch"}, "M_INVALID_PARAM"),
            ({"width": 32, "height": 32, "animated": "maybe"}, "M_INVALID_PARAM"),
        ]
        for params, errcode in cases:
            r = await thumbnail(c, token, sn, mid, **params)
            assert r.status_code == 400, params
            assert r.json()["errcode"] == errcode, params
        sn, mid = await upload(c, token, b"text", "text/plain")
        r = await thumbnail(c, token, sn, mid, width=32, height=32)
        assert r.status_code == 400


async def test_common_thumbnails_are_made_at_upload(media_server: Any) -> None:
    async with media_server.client() as c:
        token = await new_user(c)
        await upload(c, token, image_bytes((1000, 1000), "JPEG"), "image/jpeg")
    await media_server.services.media.wait_for_background()
    conn = await asyncpg.connect(media_server.db_url)
    try:
        rows = await conn.fetch("SELECT method, box_width, box_height, width, height FROM media_thumbnails")
    finally:
        await conn.close()
    made = {(r["method"], r["box_width"], r["box_height"]): (r["width"], r["height"]) for r in rows}
    assert made == {
        ("crop", 32, 32): (32, 32), ("crop", 96, 96): (96, 96), ("scale", 320, 240): (240, 240),
        ("scale", 640, 480): (480, 480), ("scale", 800, 600): (600, 600),
    }


# -- asynchronous uploads ---------------------------------------------------------------
async def test_create_then_upload(media_server: Any) -> None:
    async with media_server.client() as c:
        alice = await new_user(c)
        bob = await new_user(c)
        r = await c.post("/_matrix/media/v1/create", headers=auth_header(alice))
        assert r.status_code == 200
        body = r.json()
        assert body["unused_expires_at"] > 0
        sn, mid = body["content_uri"][len("mxc://"):].split("/")
        download = f"/_matrix/client/v1/media/download/{sn}/{mid}"
        r = await c.get(download, params={"timeout_ms": 200}, headers=auth_header(alice))
        assert r.status_code == 504 and r.json()["errcode"] == "M_NOT_YET_UPLOADED"

        put = f"/_matrix/media/v3/upload/{sn}/{mid}"
        r = await c.put(put, content=b"late", headers={**auth_header(bob), "Content-Type": "text/plain"})
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"

        waiting = asyncio.create_task(c.get(download, params={"timeout_ms": 10000}, headers=auth_header(bob)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        r = await c.put(put, params={"filename": "late.txt"}, content=b"late",
                        headers={**auth_header(alice), "Content-Type": "text/plain"})
        assert r.status_code == 200 and r.json() == {}
        got = await waiting
        assert got.status_code == 200 and got.content == b"late"
        assert got.headers["content-disposition"] == 'inline; filename="late.txt"'

        r = await c.put(put, content=b"again", headers={**auth_header(alice), "Content-Type": "text/plain"})
        assert r.status_code == 409 and r.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
        r = await c.put(f"/_matrix/media/v3/upload/{sn}/neverCreated", content=b"x", headers=auth_header(alice))
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.put(f"/_matrix/media/v3/upload/elsewhere.org/{mid}", content=b"x", headers=auth_header(alice))
        assert r.status_code == 404


# -- quarantine ----------------------------------------------------------------------------
async def test_quarantine_admin_api(media_server: Any) -> None:
    async with media_server.client() as c:
        admin = await new_user(c, "admin")
        await media_server.services.account_store.set_admin("@admin:localhost", True)
        alice_login = await new_user(c, "alice")
        bob = await new_user(c, "bob")
        sn, a1 = await upload(c, alice_login, b"one", "text/plain")
        _, a2 = await upload(c, alice_login, b"two", "text/plain")
        _, b1 = await upload(c, bob, b"three", "text/plain")
        url = "/_parley/admin/v1/media/quarantine"

        r = await c.post(url, json={"media_id": a1}, headers=auth_header(bob))
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await c.post(url, json={"media_id": a1, "user_id": "@x:localhost"}, headers=auth_header(admin))
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"

        r = await c.post(url, json={"media_id": f"mxc://{sn}/{b1}"}, headers=auth_header(admin))
        assert r.status_code == 200 and r.json() == {"num_quarantined": 1}
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{b1}", headers=auth_header(bob))
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"

        r = await c.post(url, json={"user_id": "@alice:localhost"}, headers=auth_header(admin))
        assert r.json() == {"num_quarantined": 2}
        for mid in (a1, a2):
            r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{mid}", headers=auth_header(bob))
            assert r.status_code == 404
            r = await c.get(f"/_matrix/media/v3/download/{sn}/{mid}")
            assert r.status_code == 404

        r = await c.post(url, json={"media_id": a1, "quarantine": False}, headers=auth_header(admin))
        assert r.json() == {"num_quarantined": 1}
        r = await c.get(f"/_matrix/client/v1/media/download/{sn}/{a1}", headers=auth_header(bob))
        assert r.status_code == 200 and r.content == b"one"
