"""Waking waiting /sync requests and streaming connections when something they care about commits.

Waiters are registered per user. An update names the users it affects (the
writer resolves a room to its joined members), so waking costs time in
proportion to the affected users, never to all connections. A waiting request
holds only an asyncio.Event: no database connection.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from homeserver.core.tokens import STREAMS, SyncToken
from homeserver.infra.bus import LocalBus, StreamUpdate


class Waiter:
    __slots__ = ("event", "user_id", "woken_by")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.event = asyncio.Event()
        self.woken_by: set[str] = set()


class Notifier:
    def __init__(self, bus: LocalBus, start: SyncToken) -> None:
        self._positions = {name: getattr(start, name) for name in STREAMS}
        self._start = dict(self._positions)
        # stream -> user -> the newest position of an update that named the user.
        self._user_positions: dict[str, dict[str, int]] = {name: {} for name in STREAMS}
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        bus.subscribe(self._on_update)
        self.bus = bus
        self.closing = False

    def current_token(self) -> SyncToken:
        return SyncToken(**self._positions)

    def _on_update(self, update: StreamUpdate) -> None:
        position = update.position
        if position > self._positions.get(update.stream, 0):
            self._positions[update.stream] = position
        seen = self._user_positions.get(update.stream)
        for user_id in update.users:
            if seen is not None and seen.get(user_id, 0) < position:
                seen[user_id] = position
            waiters = self._waiters.get(user_id)
            if not waiters:
                continue
            for w in waiters:
                w.woken_by.add(update.stream)
                w.event.set()

    def moved_for(self, user_id: str, stream: str, since: int) -> bool:
        """Whether an update naming this user went past `since` on `stream`.

        Every writer names the users whose sync the update can change, so False
        means the user's sections of that stream are as they were at `since`.
        Positions from before this process started are unknown: True.
        """
        if since < self._start.get(stream, 0):
            return True
        return self._user_positions[stream].get(user_id, 0) > since

    def anything_for(self, user_id: str, since: SyncToken) -> bool:
        return any(self.moved_for(user_id, name, getattr(since, name)) for name in STREAMS)

    def register(self, user_id: str) -> Waiter:
        w = Waiter(user_id)
        self._waiters[user_id].add(w)
        return w

    def unregister(self, w: Waiter) -> None:
        waiters = self._waiters.get(w.user_id)
        if waiters is not None:
            waiters.discard(w)
            if not waiters:
                del self._waiters[w.user_id]

    async def wait(self, w: Waiter, timeout_s: float) -> bool:
        """True if woken before the timeout."""
        if w.event.is_set():
            return True
        try:
            await asyncio.wait_for(w.event.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def shut_down(self) -> None:
        """Answer every waiting request now: the server is stopping."""
        self.closing = True
        for waiters in self._waiters.values():
            for w in waiters:
                w.event.set()

    def waiter_count(self) -> int:
        return sum(len(v) for v in self._waiters.values())
