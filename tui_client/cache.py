"""The local cache of an account's rooms and recent timelines: one SQLite file, mode 0600.

Where: ``<user cache dir>/parley-tui/<account>/state.sqlite``, ``<account>`` being a hash
of the homeserver URL and the user id (so two accounts never share a file, and the path
says nothing about who you are). The folder is 0700, the file 0600.

What: a ``meta`` table (format version, user, homeserver, the sync token ``next_batch``,
account data) and a ``rooms`` table, one row of JSON per room (:mod:`tui_client.snapshot`).
A save writes only the rooms the model marked dirty, together with ``next_batch``, in one
transaction: the token on disk always matches the rooms on disk, so the next start
catches up from it and neither loses nor repeats anything.

Anything unreadable (a corrupt file, another format version, another account) is
deleted and :meth:`StateCache.load` returns None: the client starts cold, as it would
without a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from platformdirs import user_cache_path

from .model import ClientState
from .snapshot import DEFAULT_MAX_EVENTS, SNAPSHOT_VERSION, SnapshotError, restore, room_to_json

APP_NAME = "parley-tui"
FILE_NAME = "state.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (room_id TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def default_cache_root() -> Path:
    """The per-user cache folder of the client (e.g. ``~/.cache/parley-tui``)."""
    return user_cache_path(APP_NAME, appauthor=False)


def account_key(homeserver: str, user_id: str) -> str:
    """A file-name-safe, stable name for one account on one homeserver."""
    return hashlib.sha256(f"{homeserver.rstrip('/')}\n{user_id}".encode()).hexdigest()[:24]


class StateCache:
    """Loads and saves one account's :class:`~tui_client.model.ClientState`.

    ``max_events`` bounds the timeline events kept per room. Saving is split so the
    event loop does the cheap part: :meth:`snapshot` serialises the dirty rooms (on the
    thread that owns the model), :meth:`write` stores them. Writes run one at a time, in
    order, on one worker thread, so a later save never lands before an earlier one.
    """

    def __init__(self, path: Path, homeserver: str, user_id: str, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.path = path
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.max_events = max_events
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-cache")
        #: a write failed: the file may lack rooms the model no longer marks dirty, so the
        #: next save rewrites everything
        self._rewrite = False

    @classmethod
    def for_account(cls, root: Path, homeserver: str, user_id: str,
                    max_events: int = DEFAULT_MAX_EVENTS) -> StateCache:
        return cls(root / account_key(homeserver, user_id) / FILE_NAME, homeserver, user_id, max_events)

    # -- reading -------------------------------------------------------------------------------

    def load(self) -> ClientState | None:
        """The cached model, or None (no cache, or one we cannot use: then it is deleted)."""
        if not self.path.exists():
            return None
        try:
            with self._connect(create=False) as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if (meta.get("version") != str(SNAPSHOT_VERSION) or meta.get("user_id") != self.user_id
                        or meta.get("homeserver") != self.homeserver):
                    raise SnapshotError("cache of another account or format")
                account_data = json.loads(meta.get("account_data", "{}"))
                if not isinstance(account_data, dict):
                    raise SnapshotError("account data is not an object")
                rooms = [json.loads(data) for (data,) in db.execute("SELECT data FROM rooms")]
            next_batch = meta.get("next_batch") or None
            return restore(self.user_id, next_batch, account_data, rooms)
        except (sqlite3.Error, ValueError, OSError):  # SnapshotError and JSON errors are ValueErrors
            self.clear()
            return None

    # -- writing -------------------------------------------------------------------------------

    def snapshot(self, model: ClientState, everything: bool = False) -> dict[str, Any]:
        """What changed since the last snapshot (``everything``: the whole model), ready for :meth:`write`."""
        if model.next_batch is None:
            # Nothing synced: nothing worth resuming from, and the changes wait for a later save.
            return {"rooms": {}, "removed": [], "account_data": None, "next_batch": None, "everything": everything}
        dirty, account_data_dirty = model.take_dirty()
        rooms = set(model.rooms) if everything else dirty
        return {
            "rooms": {room_id: json.dumps(room_to_json(model.rooms[room_id], self.max_events),
                                          separators=(",", ":"))
                      for room_id in rooms if room_id in model.rooms},
            "removed": [room_id for room_id in dirty if room_id not in model.rooms],
            "account_data": json.dumps(model.account_data) if account_data_dirty or everything else None,
            "next_batch": model.next_batch,
            "everything": everything,
        }

    def write(self, snapshot: dict[str, Any]) -> None:
        """Store a :meth:`snapshot` in one transaction (replacing everything when it says so)."""
        if snapshot["next_batch"] is None:
            return
        with self._connect(create=True) as db, db:
            if snapshot["everything"]:
                db.execute("DELETE FROM rooms")
            db.executemany("INSERT OR REPLACE INTO rooms (room_id, data) VALUES (?, ?)",
                           snapshot["rooms"].items())
            db.executemany("DELETE FROM rooms WHERE room_id = ?", [(r,) for r in snapshot["removed"]])
            meta = {"version": str(SNAPSHOT_VERSION), "user_id": self.user_id, "homeserver": self.homeserver,
                    "next_batch": snapshot["next_batch"]}
            if snapshot["account_data"] is not None:
                meta["account_data"] = snapshot["account_data"]
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())

    def save(self, model: ClientState, everything: bool = False) -> bool:
        """Store what changed, after any save still being written; False (and the file
        deleted) when the disk refused it."""
        snapshot = self.snapshot(model, everything or self._rewrite)
        return self._writer.submit(self._write_or_clear, snapshot).result()

    async def save_async(self, model: ClientState, everything: bool = False) -> bool:
        """:meth:`save` without blocking the event loop on the file."""
        snapshot = self.snapshot(model, everything or self._rewrite)
        return await asyncio.wrap_future(self._writer.submit(self._write_or_clear, snapshot))

    def close(self) -> None:
        """Wait for pending writes and stop the writer thread."""
        self._writer.shutdown(wait=True)

    def _write_or_clear(self, snapshot: dict[str, Any]) -> bool:
        if self._rewrite and not snapshot["everything"]:
            return False  # taken before an earlier write failed: only a whole rewrite is safe now
        try:
            self.write(snapshot)
        except (sqlite3.Error, OSError):
            # A half-known file is worse than none: drop it, and write it whole next time.
            self._delete_files()
            self._rewrite = True
            return False
        if snapshot["everything"]:
            self._rewrite = False
        return True

    def clear(self) -> None:
        """Delete the cache of this account (logout, or a file we cannot read), after any
        write still pending (which would otherwise bring it back)."""
        self._writer.submit(self._delete_files).result()

    def _delete_files(self) -> None:
        for path in (self.path, *self.path.parent.glob(self.path.name + "-*")):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()

    @contextlib.contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it is never readable by others, even for a moment;
            # SQLite gives its journal the database file's permissions.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
        # Reading opens the file read-write without creating it (a missing file is no cache).
        target = str(self.path) if create else self.path.resolve().as_uri() + "?mode=rw"
        db = sqlite3.connect(target, uri=not create, timeout=5, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous = NORMAL")
            if create:
                db.executescript(_SCHEMA)
            yield db
        finally:
            db.close()
