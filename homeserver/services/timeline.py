"""Reading a room's history: /messages, /context, single events, with history visibility applied.

Event filters (`filter=` on /messages and /context) are applied while paging:
rows are read in batches and matched in core.filters until the page is full,
and the `end` token points just past the last row examined, so the next page
continues without a gap whether or not the rows before it matched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver import errors
from homeserver.core.filters import FilterError, RoomEventFilter, parse_room_event_filter_json
from homeserver.core.tokens import RoomPosition, TokenError
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore, StoredEvent

if TYPE_CHECKING:
    from homeserver.services.relations import RelationsService

MAX_PAGE = 1000
# A filtered page reads at most this many batches before answering with what it found.
MAX_FILTER_BATCHES = 10
DEFAULT_CONTEXT_LIMIT = 10


def parse_filter_arg(text: str | None) -> RoomEventFilter:
    try:
        return parse_room_event_filter_json(text)
    except FilterError as e:
        raise errors.MatrixError(400, e.errcode, str(e)) from None


def position_of(s: StoredEvent) -> RoomPosition:
    return RoomPosition(stream=s.stream_ordering, topological=s.topological_ordering)


class TimelineService:
    def __init__(
        self,
        rooms: RoomService,
        events: EventStore,
        serializer: EventSerializer,
        visibility: VisibilityFilter,
        relations: RelationsService | None = None,
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.serializer = serializer
        self.visibility = visibility
        self.relations = relations

    async def _serialize(self, requester: Requester, stored: list[StoredEvent]) -> list[dict[str, Any]]:
        """Client events with transaction IDs and bundled aggregations."""
        txn_ids = await self._txns(requester, stored)
        if self.relations is None:
            return await self.serializer.serialize(stored, txn_ids=txn_ids)
        return await self.relations.serialize(requester, stored, txn_ids=txn_ids)

    async def _page(
        self,
        room_id: str,
        *,
        from_bound: tuple[int, int] | None,
        to_bound: tuple[int, int] | None,
        backwards: bool,
        limit: int,
        event_filter: RoomEventFilter,
    ) -> tuple[list[StoredEvent], StoredEvent | None, bool]:
        """Up to `limit` matching events: (events, last row examined, more rows may follow)."""
        if limit == 0:
            return [], None, True
        if event_filter.is_unrestricted:
            rows = await self.events.room_events_between(
                room_id, from_topo=from_bound, to_topo=to_bound, backwards=backwards, limit=limit
            )
            return rows, (rows[-1] if rows else None), len(rows) == limit
        matched: list[StoredEvent] = []
        last: StoredEvent | None = None
        cursor = from_bound
        batch = max(limit * 2, 50)
        for _ in range(MAX_FILTER_BATCHES):
            rows = await self.events.room_events_between(
                room_id, from_topo=cursor, to_topo=to_bound, backwards=backwards, limit=batch
            )
            for row in rows:
                last = row
                if event_filter.matches(row.event.pdu | {"room_id": row.event.room_id}):
                    matched.append(row)
                    if len(matched) == limit:
                        return matched, last, True
            if len(rows) < batch:
                return matched, last, False
            cursor = (last.topological_ordering, last.stream_ordering) if last else cursor
        return matched, last, True

    async def _lazy_members(
        self, room_id: str, at: StoredEvent | None, events: list[StoredEvent], user_id: str
    ) -> list[StoredEvent]:
        """Member events of the senders of `events`, as of the state after `at`."""
        if at is None or at.state_group is None or not events:
            return []
        senders = {s.event.sender for s in events}
        state = await self.events.state_ids_for_group(at.state_group, types=["m.room.member"])
        ids = [eid for (_, key), eid in state.items() if key in senders]
        stored = await self.events.get_events(ids)
        return sorted(stored.values(), key=lambda s: s.stream_ordering)

    async def _topo_bound(self, room_id: str, pos: RoomPosition, backwards: bool) -> tuple[int, int]:
        """A (depth, stream) bound for a position, exclusive in the direction of travel."""
        if pos.topological is not None:
            return (pos.topological, pos.stream)
        # A bare stream position: the last event at or before it marks the point.
        last = await self.events.latest_room_events(room_id, pos.stream, 1)
        if not last:
            return (0, 0)
        s = last[-1]
        if backwards:
            return (s.topological_ordering, s.stream_ordering + 1)
        return (s.topological_ordering, s.stream_ordering)

    async def messages(self, requester: Requester, room_id: str, args: dict[str, str]) -> dict[str, Any]:
        await self.rooms.room_version(room_id)
        membership = await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        direction = args.get("dir", "b")
        if direction not in ("b", "f"):
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'dir' must be 'b' or 'f'")
        backwards = direction == "b"
        try:
            limit = int(args.get("limit", "10"))
        except ValueError:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None
        limit = max(0, min(limit, MAX_PAGE))
        try:
            from_pos = RoomPosition.decode(args["from"]) if args.get("from") else None
            to_pos = RoomPosition.decode(args["to"]) if args.get("to") else None
        except TokenError:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token") from None

        from_bound = await self._topo_bound(room_id, from_pos, backwards) if from_pos else None
        if from_bound is None and membership in ("leave", "ban") and backwards:
            # Someone who left reads backwards from their leave, not from the present.
            m = await self.events.membership_of(room_id, requester.user_id)
            left = await self.events.get_event(m["event_id"]) if m else None
            if left is not None:
                from_bound = (left.topological_ordering, left.stream_ordering + 1)
        to_bound = await self._topo_bound(room_id, to_pos, not backwards) if to_pos else None
        event_filter = parse_filter_arg(args.get("filter"))
        if event_filter.limit is not None:
            limit = min(limit, event_filter.limit)
        rows, last, more = await self._page(
            room_id, from_bound=from_bound, to_bound=to_bound, backwards=backwards, limit=limit,
            event_filter=event_filter,
        )
        visible = await self.visibility.filter(requester.user_id, room_id, rows)
        if from_pos is not None:
            start = from_pos.encode()
        elif rows and backwards:
            # Just after the newest event, so paginating backwards from here includes it.
            start = RoomPosition(stream=rows[0].stream_ordering + 1, topological=rows[0].topological_ordering).encode()
        else:
            start = RoomPosition(stream=0, topological=0).encode()
        out: dict[str, Any] = {"chunk": await self._serialize(requester, visible), "start": start}
        if more and last is not None:
            out["end"] = position_of(last).encode()
        if event_filter.lazy_load_members and visible:
            members = await self._lazy_members(room_id, visible[-1], visible, requester.user_id)
            out["state"] = await self.serializer.serialize(members)
        return out

    async def context(self, requester: Requester, room_id: str, event_id: str, args: dict[str, str]) -> dict[str, Any]:
        """GET /rooms/{roomId}/context/{eventId}: the event, what surrounds it, and the state there."""
        await self.rooms.room_version(room_id)
        await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        try:
            limit = int(args.get("limit", str(DEFAULT_CONTEXT_LIMIT)))
        except ValueError:
            raise errors.MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None
        limit = max(0, min(limit, MAX_PAGE))
        event_filter = parse_filter_arg(args.get("filter"))
        if event_filter.limit is not None:
            limit = min(limit, event_filter.limit)
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id:
            raise errors.not_found("Event not found")
        if not await self.visibility.filter(requester.user_id, room_id, [stored]):
            raise errors.not_found("Event not found")
        here = (stored.topological_ordering, stored.stream_ordering)
        before_limit = limit // 2
        before, last_before, _ = await self._page(
            room_id, from_bound=here, to_bound=None, backwards=True, limit=before_limit, event_filter=event_filter
        )
        after, last_after, _ = await self._page(
            room_id, from_bound=here, to_bound=None, backwards=False, limit=limit - before_limit,
            event_filter=event_filter,
        )
        before = await self.visibility.filter(requester.user_id, room_id, before)
        after = await self.visibility.filter(requester.user_id, room_id, after)
        serialized = await self._serialize(requester, [stored, *before, *after])
        state_at = after[-1] if after else stored
        state_ids: dict[tuple[str, str], str] = {}
        if state_at.state_group is not None:
            state_ids = await self.events.state_ids_for_group(state_at.state_group)
        if event_filter.lazy_load_members:
            senders = {s.event.sender for s in [stored, *before, *after]}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders}
        state = sorted((await self.events.get_events(state_ids.values())).values(), key=lambda s: s.stream_ordering)
        return {
            "event": serialized[0],
            "events_before": serialized[1:1 + len(before)],
            "events_after": serialized[1 + len(before):],
            "start": position_of(last_before or stored).encode(),
            "end": position_of(last_after or stored).encode(),
            "state": await self.serializer.serialize(state),
        }

    async def _txns(self, requester: Requester, stored: list[StoredEvent]) -> dict[str, str]:
        own = [s.event_id for s in stored if s.event.sender == requester.user_id]
        return await self.events.txn_ids_for_events(requester.user_id, requester.device_id, own)

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id:
            raise errors.not_found("Event not found")
        visible = await self.visibility.filter(requester.user_id, room_id, [stored])
        if not visible:
            raise errors.not_found("Event not found")
        return (await self._serialize(requester, visible))[0]
