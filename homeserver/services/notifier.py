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
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        bus.subscribe(self._on_update)
        self.bus = bus
        self.closing = False

    def current_token(self) -> SyncToken:
        return SyncToken(**self._positions)

    def _on_update(self, update: StreamUpdate) -> None:
        if update.position > self._positions.get(update.stream, 0):
            self._positions[update.stream] = update.position
        for user_id in update.users:
            waiters = self._waiters.get(user_id)
            if not waiters:
                continue
            for w in waiters:
                w.woken_by.add(update.stream)
                w.event.set()

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
