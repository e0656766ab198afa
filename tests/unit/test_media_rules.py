"""Media rules without a server: stored content types, Content-Disposition, thumbnail geometry."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from homeserver.services import media_types, thumbnailer
from homeserver.services.thumbnailer import ThumbnailSpec

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 20
GIF = b"GIF89a" + b"\0" * 20
WEBP = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 20


@pytest.mark.parametrize(
    ("declared", "head", "stored"),
    [
        ("image/png", PNG, "image/png"),
        ("image/png", JPEG, "image/jpeg"),
        ("image/jpeg", GIF, "image/gif"),
        (None, WEBP, "image/webp"),
        ("application/octet-stream", PNG, "image/png"),
        ("image/png", b"<svg></svg>", "application/octet-stream"),
        ("image/svg+xml", b"<svg></svg>", "application/octet-stream"),
        ("text/plain", PNG, "text/plain"),
        ("text/plain; charset=utf-8", b"hi", "text/plain; charset=utf-8"),
        ("application/pdf", b"%PDF-1.7", "application/pdf"),
        (None, b"hi", "application/octet-stream"),
        ("", b"hi", "application/octet-stream"),
        ("not a type", b"hi", "application/octet-stream"),
        ("text/plain\r\nX-Evil: 1", b"hi", "application/octet-stream"),
    ],
)
def test_stored_content_type(declared: str | None, head: bytes, stored: str) -> None:
    assert media_types.stored_content_type(declared, head) == stored


@pytest.mark.parametrize(
    ("content_type", "filename", "header"),
    [
        ("image/png", "a.png", 'inline; filename="a.png"'),
        ("IMAGE/PNG", None, "inline"),
        ("text/plain; charset=utf-8", "n.txt", 'inline; filename="n.txt"'),
        ("text/html", "x.html", 'attachment; filename="x.html"'),
        ("image/svg+xml", "x.svg", 'attachment; filename="x.svg"'),
        ("application/octet-stream", "ünï cödé.bin", "attachment; filename*=utf-8''%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.bin"),
        ("image/png", 'quote".png', "inline; filename*=utf-8''quote%22.png"),
        ("image/png", "semi;colon.png", 'inline; filename="semi;colon.png"'),
    ],
)
def test_content_disposition(content_type: str, filename: str | None, header: str) -> None:
    assert media_types.content_disposition(content_type, filename) == header


def test_upload_names() -> None:
    assert media_types.valid_upload_name("holiday photo.jpg")
    assert media_types.valid_upload_name("ünïcode.png")
    assert not media_types.valid_upload_name("")
    assert not media_types.valid_upload_name("a\nb")
    assert not media_types.valid_upload_name("x" * 256)


@pytest.mark.parametrize(
    ("size", "box", "scaled", "cropped"),
    [
        ((4000, 3000), (320, 240), (320, 240), (320, 240)),
        ((4000, 1000), (320, 240), (320, 80), (320, 240)),
        ((1000, 4000), (800, 600), (150, 600), (800, 600)),
        ((100, 50), (320, 240), (100, 50), (67, 50)),  # never upscaled
        ((50, 200), (96, 96), (24, 96), (50, 50)),
        ((1, 1), (32, 32), (1, 1), (1, 1)),
    ],
)
def test_geometry(size: tuple[int, int], box: tuple[int, int], scaled: tuple[int, int],
                  cropped: tuple[int, int]) -> None:
    assert thumbnailer.scaled_size(*size, *box) == scaled
    assert thumbnailer.cropped_size(*size, *box) == cropped


def test_pixel_limit_is_checked_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "PNG")
    data = buf.getvalue()
    assert thumbnailer.probe(data, 4_000_000).width == 2000
    with pytest.raises(thumbnailer.TooManyPixels):
        thumbnailer.probe(data, 3_999_999)
    with pytest.raises(thumbnailer.TooManyPixels):
        thumbnailer.make_thumbnails(data, [ThumbnailSpec("crop", 32, 32, False)], 3_999_999)


def test_undecodable_bytes() -> None:
    with pytest.raises(thumbnailer.CannotThumbnail):
        thumbnailer.probe(b"\x89PNG\r\n\x1a\nnonsense", 10**7)
    with pytest.raises(thumbnailer.CannotThumbnail):
        thumbnailer.make_thumbnails(b"GIF89a" + b"\xff" * 100, [ThumbnailSpec("scale", 32, 32, False)], 10**7)


def test_one_decode_makes_every_size() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), "purple").save(buf, "JPEG")
    specs = [ThumbnailSpec("crop", 32, 32, False), ThumbnailSpec("scale", 800, 600, False)]
    made = thumbnailer.make_thumbnails(buf.getvalue(), specs, 10**8)
    assert [(t.width, t.height, t.content_type) for t in made] == [(32, 32, "image/jpeg"), (800, 600, "image/jpeg")]
    for t in made:
        assert Image.open(io.BytesIO(t.data)).size == (t.width, t.height)
