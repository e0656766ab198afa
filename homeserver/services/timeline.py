"""Reading a room's history: /messages, single events, with history visibility applied."""

from __future__ import annotations

from typing import Any

from homeserver import errors
from homeserver.core.tokens import RoomPosition, TokenError
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer, VisibilityFilter
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore, StoredEvent

MAX_PAGE = 1000


def position_of(s: StoredEvent) -> RoomPosition:
    return RoomPosition(stream=s.stream_ordering, topological=s.topological_ordering)


class TimelineService:
    def __init__(
        self, rooms: RoomService, events: EventStore, serializer: EventSerializer, visibility: VisibilityFilter
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.serializer = serializer
        self.visibility = visibility

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
        rows = await self.events.room_events_between(
            room_id, from_topo=from_bound, to_topo=to_bound, backwards=backwards, limit=limit
        )
        visible = await self.visibility.filter(requester.user_id, room_id, rows)
        if from_pos is not None:
            start = from_pos.encode()
        elif rows and backwards:
            # Just after the newest event, so paginating backwards from here includes it.
            start = RoomPosition(stream=rows[0].stream_ordering + 1, topological=rows[0].topological_ordering).encode()
        else:
            start = RoomPosition(stream=0, topological=0).encode()
        out: dict[str, Any] = {
            "chunk": await self.serializer.serialize(visible, txn_ids=await self._txns(requester, visible)),
            "start": start,
        }
        if len(rows) == limit and rows:
            out["end"] = position_of(rows[-1]).encode()
        return out

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
        return (await self.serializer.serialize(visible, txn_ids=await self._txns(requester, visible)))[0]
