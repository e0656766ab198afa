"""Waking waiting /sync requests and streaming connections when something they care about commits.

Waiters are registered per user. An update names the users it affects (the
writer resolves a room to its joined members), so waking costs time in
proportion to the affected users, never to all connections. A waiting request
holds only a future: no database connection, no task of its own.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from homeserver.core.tokens import STREAMS, SyncToken
from homeserver.infra.bus import LocalBus, StreamUpdate


class Waiter:
    """One waiting sync. `set` wakes it; a wake before `Notifier.wait` is kept until `clear`."""

    __slots__ = ("_future", "user_id", "woken", "woken_by")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.woken = False
        self.woken_by: set[str] = set()
        self._future: asyncio.Future[bool] | None = None

    def set(self) -> None:
        self.woken = True
        fut = self._future
        if fut is not None and not fut.done():
            fut.set_result(True)

    def clear(self) -> None:
        self.woken = False


def _time_out(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


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
                w.set()

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
        """True if woken before the timeout.

        A bare future and a timer, not `wait_for` on an Event: a wake resumes the waiting
        request in one step, which matters when one message wakes hundreds of them.
        """
        if w.woken:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        w._future = fut
        timer = loop.call_later(timeout_s, _time_out, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            w._future = None

    def shut_down(self) -> None:
        """Answer every waiting request now: the server is stopping."""
        self.closing = True
        for waiters in self._waiters.values():
            for w in waiters:
                w.set()

    def waiter_count(self) -> int:
        return sum(len(v) for v in self._waiters.values())
