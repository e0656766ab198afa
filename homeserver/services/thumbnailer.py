"""Image probing and thumbnail making with Pillow. Synchronous and CPU-bound: call through a worker thread.

Two methods, as the spec describes them:

* ``scale``: the largest size with the original aspect ratio that fits inside
  the requested box (never larger than the original).
* ``crop``: exactly the requested aspect ratio, the requested size if the
  original is big enough (otherwise the largest box of that aspect that fits in
  the original): scaled to cover the box, then centre-cropped.

Nothing is ever upscaled. EXIF orientation is applied first, so output is
upright. Animated GIF/WebP sources give animated WebP thumbnails when asked.
The pixel limit is checked against the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

# EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
MAX_ANIMATION_FRAMES = 300


class TooManyPixels(Exception):
    """The image would decode to more pixels than allowed (a decompression bomb, or just huge)."""


class CannotThumbnail(Exception):
    """The bytes are not an image Pillow can decode."""


@dataclass(frozen=True)
class ImageFacts:
    width: int  # after EXIF orientation
    height: int
    animated: bool


@dataclass(frozen=True)
class ThumbnailSpec:
    method: str  # "crop" | "scale"
    box_width: int
    box_height: int
    animated: bool


@dataclass(frozen=True)
class Thumbnail:
    spec: ThumbnailSpec
    width: int
    height: int
    content_type: str
    data: bytes


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels(str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise CannotThumbnail(str(e)) from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise CannotThumbnail("empty image")
    if width * height > max_pixels:
        raise TooManyPixels(f"{width}x{height} is more than {max_pixels} pixels")
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF means "no orientation"
        return 1


def probe(data: bytes, max_pixels: int) -> ImageFacts:
    """Dimensions (upright) and animation of an image, from its headers only."""
    im = _open(data, max_pixels)
    try:
        width, height = im.size
        if _orientation(im) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        return ImageFacts(width=width, height=height, animated=bool(getattr(im, "is_animated", False)))
    finally:
        im.close()


def scaled_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """`scale`: fit inside the box keeping the aspect ratio, never upscale."""
    factor = min(box_w / width, box_h / height, 1.0)
    return max(1, round(width * factor)), max(1, round(height * factor))


def cropped_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """`crop`: the box, shrunk (keeping its aspect) until it fits inside the original."""
    factor = min(width / box_w, height / box_h, 1.0)
    return max(1, round(box_w * factor)), max(1, round(box_h * factor))


def output_size(spec: ThumbnailSpec, width: int, height: int) -> tuple[int, int]:
    if spec.method == "crop":
        return cropped_size(width, height, spec.box_width, spec.box_height)
    return scaled_size(width, height, spec.box_width, spec.box_height)


def _resize(frame: Image.Image, method: str, size: tuple[int, int]) -> Image.Image:
    if method == "crop":
        return ImageOps.fit(frame, size, method=Image.Resampling.LANCZOS)
    return frame.resize(size, Image.Resampling.LANCZOS)


def _static_output(im: Image.Image, source_format: str | None) -> tuple[Image.Image, str, str]:
    """The image converted for saving, the Pillow format and the content type."""
    if source_format == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
        return (im if im.mode in ("RGB", "L") else im.convert("RGB")), "JPEG", "image/jpeg"
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = im.mode in ("P", "PA") and "transparency" in im.info or im.mode.endswith("A")
        im = im.convert("RGBA" if has_alpha else "RGB")
    return im, "PNG", "image/png"


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=80, optimize=True, progressive=True)
    else:
        im.save(buf, fmt, optimize=True)
    return buf.getvalue()


def make_thumbnails(data: bytes, specs: list[ThumbnailSpec], max_pixels: int) -> list[Thumbnail]:
    """Decode once, make every requested thumbnail. Raises TooManyPixels or CannotThumbnail."""
    if not specs:
        return []
    im = _open(data, max_pixels)
    try:
        source_format = im.format
        animated_specs = [s for s in specs if s.animated]
        static_specs = [s for s in specs if not s.animated]
        out: list[Thumbnail] = []
        if animated_specs:
            if getattr(im, "is_animated", False):
                out.extend(_animated(im, animated_specs, max_pixels))
            else:
                static_specs.extend(ThumbnailSpec(s.method, s.box_width, s.box_height, False) for s in animated_specs)
            im.seek(0)
        if static_specs:
            out.extend(_static(im, source_format, static_specs))
        return out
    except (TooManyPixels, CannotThumbnail):
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise CannotThumbnail(str(e)) from None
    finally:
        im.close()


def _static(im: Image.Image, source_format: str | None, specs: list[ThumbnailSpec]) -> list[Thumbnail]:
    raw_w, raw_h = im.size
    transposed = _orientation(im) in _TRANSPOSING_ORIENTATIONS
    width, height = (raw_h, raw_w) if transposed else (raw_w, raw_h)
    # Decode JPEGs at a reduced scale when every output is much smaller (DCT scaling is nearly free).
    need = 0.0
    for spec in specs:
        out_w, out_h = output_size(spec, width, height)
        cover = max(out_w / width, out_h / height) if spec.method == "crop" else min(
            out_w / width, out_h / height
        )
        need = max(need, cover)
    if source_format == "JPEG" and need < 0.5:
        im.draft("RGB", (math.ceil(raw_w * need) + 1, math.ceil(raw_h * need) + 1))
    upright = ImageOps.exif_transpose(im)
    upright.load()
    results = []
    for spec in specs:
        size = output_size(spec, width, height)
        frame = _resize(upright, spec.method, size)
        frame, fmt, content_type = _static_output(frame, source_format)
        results.append(Thumbnail(spec, frame.width, frame.height, content_type, _encode(frame, fmt)))
    return results


def _animated(im: Image.Image, specs: list[ThumbnailSpec], max_pixels: int) -> list[Thumbnail]:
    width, height = im.size
    frames: list[Image.Image] = []
    durations: list[int] = []
    decoded = 0
    for frame in ImageSequence.Iterator(im):
        decoded += width * height
        if len(frames) >= MAX_ANIMATION_FRAMES or decoded > 4 * max_pixels:
            break
        frames.append(frame.convert("RGBA"))
        durations.append(int(frame.info.get("duration", 100)) or 100)
    results = []
    for spec in specs:
        size = output_size(spec, width, height)
        resized = [_resize(f, spec.method, size) for f in frames]
        buf = io.BytesIO()
        resized[0].save(
            buf, "WEBP", save_all=True, append_images=resized[1:], duration=durations, loop=0, quality=80
        )
        results.append(Thumbnail(spec, size[0], size[1], "image/webp", buf.getvalue()))
    return results
