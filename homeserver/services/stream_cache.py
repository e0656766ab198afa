"""What the newest events changed, held in memory so a woken `/sync` needs no database.

One message to a 300-member room wakes 300 syncs. Each of them asks the same
questions: which of my rooms have new events, what are they, did my
memberships change, what is the sender's membership event. The answers live
here, fed by RoomService after every commit, strictly in stream order (see
`StreamSequencer`), so that whenever the notifier's events position is P every
event at or below P has been applied. Each lookup answers `None` when the cache
cannot vouch for the answer (positions from before this process started, a
room's tail trimmed past the asked position, a load that raced a change): the
caller then reads the database as before. Correctness never depends on a hit.

With several worker processes, each one applies the events it hears of on the
bus in the same order; the sequencer then lives with the bus (DESIGN.md,
"Streams").
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.events import StoredEvent

log = logging.getLogger(__name__)


class StreamSequencer:
    """Gives out the positions of one stream and hands committed ones to `apply` in order.

    A writer takes a position with `allocate()`, then calls `finish(p, item)`
    after its commit or `abort(p)` after a rollback. `apply(item)` runs for p only
    when no lower position is still in flight, so whoever sees position p applied
    knows every lower one is committed. Writers in different rooms commit in any
    order and never wait for each other; readers never see a hole.
    """

    def __init__(self, apply: Callable[[Any], None]) -> None:
        self._apply = apply
        self._in_flight: set[int] = set()
        self._done: list[tuple[int, int, Any]] = []  # heap of (position, tiebreak, item)
        self._seq = 0
        self._applied_upto = 0
        self._next = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    def start_after(self, position: int) -> None:
        """Positions up to `position` exist already (read from the database at start-up)."""
        self._next = max(self._next, position)
        self._applied_upto = max(self._applied_upto, position)

    def allocate(self) -> int:
        """The next position, in flight until `finish` or `abort`."""
        self._next += 1
        self._in_flight.add(self._next)
        return self._next

    def abort(self, position: int) -> None:
        self._in_flight.discard(position)
        self._flush()

    def finish(self, position: int, item: Any) -> None:
        self._in_flight.discard(position)
        self._seq += 1
        heapq.heappush(self._done, (position, self._seq, item))
        self._flush()

    async def applied(self, position: int) -> None:
        """Return once `position` has been applied."""
        if position <= self._applied_upto:
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (position, self._seq, fut))
        await fut

    def _flush(self) -> None:
        lowest = min(self._in_flight) if self._in_flight else None
        while self._done and (lowest is None or self._done[0][0] < lowest):
            position, _, item = heapq.heappop(self._done)
            try:
                self._apply(item)
            except Exception:
                log.exception("applying position %s failed", position)
            self._applied_upto = max(self._applied_upto, position)
        while self._waiters and self._waiters[0][0] <= self._applied_upto:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)


@dataclass
class _Tail:
    """A room's newest events (oldest first); every event after `complete_after` is in it."""

    complete_after: int
    events: deque[StoredEvent]


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


Members = dict[str, tuple[str, int]]  # user -> (membership event ID, its stream position)


class EventStreamCache:
    def __init__(self, start: int, *, tail_size: int = 50, max_rooms: int = 20_000, max_users: int = 50_000) -> None:
        # Nothing is known of positions at or below `start`: they were written before this process began.
        self.start = start
        self.tail_size = tail_size
        self.room_last: dict[str, int] = {}  # room -> newest event position
        self.room_state_last: dict[str, int] = {}  # room -> newest state event position
        self.room_member_last: dict[str, int] = {}  # room -> newest membership event position
        self.user_member_last: dict[str, int] = {}  # user -> newest membership event about them
        self._tails: _LRU = _LRU(max_rooms)
        self._members: _LRU = _LRU(max_rooms)  # room -> Members (current)
        self._member_loads: dict[str, int] = {}  # room -> membership changes seen while a load ran
        self._member_load_done: dict[str, asyncio.Future[None]] = {}
        self._user_rooms: _LRU = _LRU(max_users)  # user -> (position, membership rows)
        self._forgets: dict[str, int] = {}

    # -- feeding (in stream order) ---------------------------------------------------
    def apply(self, stored: StoredEvent) -> None:
        ev = stored.event
        room_id = ev.room_id
        pos = stored.stream_ordering
        self.room_last[room_id] = pos
        tail: _Tail | None = self._tails.get(room_id)
        if ev.is_state or ev.type == "m.room.redaction":
            # State carries per-position extras (prev_content, state groups) and redactions
            # change an older event: a window across either is read from the database.
            self.room_state_last[room_id] = pos
            self._tails.put(room_id, _Tail(pos, deque(maxlen=self.tail_size)))
        elif tail is None:
            self._tails.put(room_id, _Tail(pos - 1, deque([stored], maxlen=self.tail_size)))
        else:
            if len(tail.events) == tail.events.maxlen:
                tail.complete_after = tail.events[0].stream_ordering
            tail.events.append(stored)
        if ev.type == "m.room.member" and ev.state_key is not None:
            user_id = ev.state_key
            self.room_member_last[room_id] = pos
            self.user_member_last[user_id] = pos
            self._user_rooms.pop(user_id, None)
            members = self._members.get(room_id)
            if members is not None:
                members[user_id] = (ev.event_id, pos)
            if room_id in self._member_loads:
                self._member_loads[room_id] += 1

    def forgot(self, user_id: str) -> None:
        """The user forgot a room: their room list changes without a new event."""
        self._user_rooms.pop(user_id, None)
        self._forgets[user_id] = self._forgets.get(user_id, 0) + 1

    # -- rooms -------------------------------------------------------------------------
    def window(self, room_id: str, after: int, upto: int, limit: int) -> list[StoredEvent] | None:
        """The newest `limit` + 1 events with after < position <= upto, oldest first; None if unknown."""
        last = self.room_last.get(room_id)
        if last is None:
            return [] if after >= self.start else None
        if last <= after:
            return []
        tail: _Tail | None = self._tails.get(room_id)
        if tail is None or tail.complete_after > after:
            return None
        events = tail.events
        # Newest first: the window is almost always the last event or two.
        i = len(events)
        while i > 0 and events[i - 1].stream_ordering > after:
            i -= 1
        out = [s for s in itertools.islice(events, i, None) if s.stream_ordering <= upto]
        return out[-(limit + 1):] if limit >= 0 else out

    def member_changes_after(self, room_ids: Iterable[str], after: int) -> bool | None:
        """Whether any of these rooms had a membership event after `after`; None if unknown."""
        if after < self.start:
            return None
        return any(self.room_member_last.get(r, 0) > after for r in room_ids)

    def member_events(self, room_id: str, users: Iterable[str], at: int) -> dict[str, str] | None:
        """Membership event IDs of `users` in the room as of position `at`; None if not known here."""
        members: Members | None = self._members.get(room_id)
        if members is None:
            return None
        out = {}
        for u in users:
            entry = members.get(u)
            if entry is None:
                continue
            if entry[1] > at:
                return None  # changed since `at`: the database knows what it was then
            out[u] = entry[0]
        return out

    def has_members(self, room_id: str) -> bool:
        return room_id in self._members

    async def load_members(self, room_id: str, load: Callable[[], Awaitable[Sequence[Any]]]) -> None:
        """Fill the room's membership map from `load()` (rows of user_id, event_id, stream_ordering).

        The 300 syncs one message wakes all want the same room: one load, the others wait for it.
        """
        if room_id in self._members:
            return
        running = self._member_load_done.get(room_id)
        if running is not None:
            await asyncio.shield(running)
            return
        done = asyncio.get_running_loop().create_future()
        self._member_load_done[room_id] = done
        self._member_loads[room_id] = 0
        try:
            rows = await load()
            if self._member_loads.get(room_id) == 0:
                self._members.put(room_id, {r["user_id"]: (r["event_id"], r["stream_ordering"]) for r in rows})
        finally:
            self._member_loads.pop(room_id, None)
            self._member_load_done.pop(room_id, None)
            done.set_result(None)

    # -- users -------------------------------------------------------------------------
    def user_memberships(self, user_id: str, at: int) -> list[Any] | None:
        """The user's membership rows as of `at`, if stored and no membership of theirs changed since."""
        entry = self._user_rooms.get(user_id)
        if entry is None:
            return None
        stored_at, rows = entry
        if self.user_member_last.get(user_id, 0) > min(at, stored_at):
            return None
        return rows

    def user_memberships_token(self, user_id: str) -> tuple[int, int]:
        """Taken before a load; `store_user_memberships` keeps the rows only if it is unchanged after."""
        return self.user_member_last.get(user_id, 0), self._forgets.get(user_id, 0)

    def store_user_memberships(self, user_id: str, at: int, rows: list[Any], token: tuple[int, int]) -> None:
        if at < self.start or self.user_memberships_token(user_id) != token:
            return
        if token[0] > at:
            return
        self._user_rooms.put(user_id, (at, rows))

    def user_membership_changed_after(self, user_id: str, after: int) -> bool:
        return after < self.start or self.user_member_last.get(user_id, 0) > after
