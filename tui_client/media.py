"""Media the client has downloaded: an in-memory cache, and where saved files go.

No Textual here. The cache is keyed by ``(mxc URI, kind)``, ``kind`` being "inline"
(what the timeline draws: the original when small, else a server thumbnail) or "full"
(the original, for the viewer and for saving). It holds at most ``max_bytes``, dropping
the least recently used entries first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from platformdirs import user_config_path

#: Images at most this big are drawn from the original (one request, no quality loss);
#: bigger ones from a thumbnail of :data:`THUMBNAIL_SIZE` pixels.
INLINE_ORIGINAL_MAX_BYTES = 512 * 1024
THUMBNAIL_SIZE = (320, 240)


class MediaCache:
    """Downloaded media bytes by ``(mxc, kind)``, bounded by total size (LRU)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._size = 0

    def get(self, mxc: str, kind: str) -> bytes | None:
        data = self._items.get((mxc, kind))
        if data is not None:
            self._items.move_to_end((mxc, kind))
        return data

    def put(self, mxc: str, kind: str, data: bytes) -> None:
        key = (mxc, kind)
        if key in self._items:
            self._size -= len(self._items.pop(key))
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._size


def wants_thumbnail(content: Mapping[str, Any]) -> bool:
    """Whether the inline picture of an ``m.image`` should be a thumbnail (big or unknown size)."""
    info = content.get("info")
    size = info.get("size") if isinstance(info, dict) else None
    return not (isinstance(size, int) and size <= INLINE_ORIGINAL_MAX_BYTES)


def media_url(content: Mapping[str, Any]) -> str | None:
    """The unencrypted ``mxc://`` URL of a media message, if it has one."""
    url = content.get("url")
    return url if isinstance(url, str) and url.startswith("mxc://") else None


def downloads_dir(home: Path | None = None) -> Path:
    """``~/Downloads`` when it exists, else a ``downloads`` folder in the config dir."""
    downloads = (home or Path.home()) / "Downloads"
    if downloads.is_dir():
        return downloads
    return user_config_path("parley-tui", appauthor=False) / "downloads"


def safe_filename(name: str) -> str:
    """A file name from a message that cannot escape the folder or hide itself."""
    cleaned = "".join(ch for ch in name.replace("/", "_").replace("\\", "_") if ch.isprintable()).strip()
    cleaned = cleaned.lstrip(".")
    return cleaned[:200] or "download"


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (1).ext``, ``name (2).ext``... when taken."""
    candidate = folder / safe_filename(name)
    stem, suffix = candidate.stem, candidate.suffix
    counter = 1
    while candidate.exists():
        candidate = folder / f"{stem} ({counter}){suffix}"
        counter += 1
    return candidate


def save_media(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` under ``folder`` with a unique safe name; return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = unique_path(folder, name)
    with open(path, "xb") as handle:  # never overwrite, even if a file appeared meanwhile
        handle.write(data)
    return path
