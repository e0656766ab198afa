"""Content types of media: what the bytes are, what we store, and how we serve them.

The stored content type rule (issue 6):

* The bytes are sniffed for the image formats we thumbnail (JPEG, PNG, GIF,
  WebP) by their signatures.
* If the bytes are one of those images and the declared type is missing,
  ``application/octet-stream`` or any ``image/*``, the sniffed type is stored
  (a JPEG uploaded as ``image/png`` is stored as ``image/jpeg``).
* If the declared type is ``image/*`` but the bytes are none of those images,
  ``application/octet-stream`` is stored: we do not vouch for an image we
  cannot recognise (this covers e.g. HTML uploaded as ``image/png``, and SVG).
* Any other declared type is kept as given (``text/plain``, ``application/pdf``,
  ``video/mp4`` ...); a missing or syntactically invalid one becomes
  ``application/octet-stream``.

Serving: ``Content-Disposition`` is ``inline`` only for the types the spec
lists as safe to render inline, ``attachment`` for everything else; file
names are quoted when plain ASCII, RFC 6266 / RFC 5987 ``filename*`` otherwise.
"""

from __future__ import annotations

import re
from urllib.parse import quote

OCTET_STREAM = "application/octet-stream"

# Image types we decode and thumbnail.
THUMBNAILABLE = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# https://spec.matrix.org/v1.19/client-server-api/#serving-inline-content
INLINE_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(
    rf"^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*\s*$"
)
MAX_CONTENT_TYPE_LENGTH = 255


def sniff_image(head: bytes) -> str | None:
    """The image type the first bytes announce, for the formats we thumbnail."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def base_type(content_type: str | None) -> str:
    """`text/plain; charset=utf-8` -> `text/plain` (lower case)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def valid_declared_type(declared: str | None) -> str | None:
    """The declared Content-Type if it is well-formed, else None."""
    if not declared:
        return None
    declared = declared.strip()
    if len(declared) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.match(declared):
        return None
    return declared


def stored_content_type(declared: str | None, head: bytes) -> str:
    """The content type to store for an upload (the rule in the module docstring)."""
    declared = valid_declared_type(declared)
    sniffed = sniff_image(head)
    declared_base = base_type(declared)
    if sniffed is not None and (
        declared is None or declared_base == OCTET_STREAM or declared_base.startswith("image/")
    ):
        return sniffed
    if declared is None or declared_base.startswith("image/"):
        return OCTET_STREAM
    return declared


def serve_inline(content_type: str | None) -> bool:
    return base_type(content_type) in INLINE_TYPES


def _plain_ascii(name: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in name) and '"' not in name and "\\" not in name


def content_disposition(content_type: str | None, filename: str | None, *, inline: bool | None = None) -> str:
    """`inline` or `attachment`, with the file name safely encoded."""
    if inline is None:
        inline = serve_inline(content_type)
    kind = "inline" if inline else "attachment"
    if not filename:
        return kind
    if _plain_ascii(filename):
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{quote(filename, safe='')}"


def valid_upload_name(name: str) -> bool:
    """A file name we accept with an upload: not too long, no control characters."""
    return 0 < len(name) <= 255 and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
