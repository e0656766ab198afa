"""A cache of values read from the database, safe against writes that race the reads.

The woken syncs of a busy room read small per-user values (unread counts, key
counts) that change only through a few known writers. Keeping them in memory
turns a wake into work with no database round trip. The danger with such a
cache is a read that starts before a write commits and finishes after it: it
would keep the old value for good. So every writer brackets its change with
`begin_write(scope)` / `end_write(scope, token)`, and a read keeps its result
only if no write to its scope was in flight or happened while it ran.

A write that ran alone can also update the cached values in place (write
through) instead of dropping them: `end_write` says whether it ran alone.

Scopes are coarse (a room, a device) and keys fine (a user in a room): a write
to a scope guards every read in it. Like the other caches of this process it
assumes this process makes every write; several writer processes would send
their invalidations over the bus.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GuardedCache(Generic[K, V]):
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._values: dict[K, V] = {}
        self._clock = 0  # ticks at every write's start and end
        self._last_write: dict[Hashable, int] = {}  # scope -> clock of its latest write start or end
        self._in_flight: dict[Hashable, int] = {}
        self._floor = 0  # reads from before a clear keep nothing

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    # -- reading through the cache ------------------------------------------------------
    def read_mark(self, scope: Hashable) -> int | None:
        """Take before reading the database; None: a write is under way, keep nothing."""
        if self._in_flight.get(scope):
            return None
        return self._clock

    def put(self, key: K, value: V, scope: Hashable, mark: int | None) -> None:
        """Keep a value read since `mark`, unless a write to its scope came in between."""
        if mark is None or mark < self._floor or self._in_flight.get(scope):
            return
        if self._last_write.get(scope, -1) > mark:
            return
        if len(self._values) >= self.max_entries:
            self.clear()
            return
        self._values[key] = value

    # -- writers --------------------------------------------------------------------------
    def begin_write(self, scope: Hashable) -> int:
        self._clock += 1
        self._last_write[scope] = self._clock
        self._in_flight[scope] = self._in_flight.get(scope, 0) + 1
        return self._clock

    def end_write(self, scope: Hashable, token: int) -> bool:
        """Close a write begun with `token`. True if no other write to the scope overlapped it:
        then the writer may update the cached values of its keys itself."""
        alone = self._last_write.get(scope) == token and self._in_flight.get(scope) == 1
        n = self._in_flight.get(scope, 1) - 1
        if n:
            self._in_flight[scope] = n
        else:
            self._in_flight.pop(scope, None)
        self._clock += 1
        self._last_write[scope] = self._clock
        if len(self._last_write) > self.max_entries:
            self.clear()
        return alone

    def set(self, key: K, value: V) -> None:
        """Write-through from a writer that ran alone (see `end_write`)."""
        if key in self._values:
            self._values[key] = value

    def invalidate(self, key: K) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()
        # Forgetting the scopes' write times is safe only if no read from before now is kept.
        self._last_write = {s: self._clock for s in self._in_flight}
        self._floor = self._clock + 1
        self._clock += 1
