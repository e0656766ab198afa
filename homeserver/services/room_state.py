"""Reading room state: /state, /state/{type}/{key}, /members."""

from __future__ import annotations

from typing import Any

from homeserver import errors
from homeserver.core.tokens import RoomPosition, SyncToken, TokenError
from homeserver.services.auth import Requester
from homeserver.services.events import EventSerializer
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore


class RoomStateService:
    def __init__(self, rooms: RoomService, events: EventStore, serializer: EventSerializer) -> None:
        self.rooms = rooms
        self.events = events
        self.serializer = serializer

    async def _visible_state_ids(self, requester: Requester, room_id: str) -> dict[tuple[str, str], str]:
        await self.rooms.room_version(room_id)
        await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        state, _ = await self.rooms.state_at_membership(requester.user_id, room_id)
        return state

    async def full_state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        ids = await self._visible_state_ids(requester, room_id)
        stored = await self.events.get_events(ids.values())
        ordered = sorted(stored.values(), key=lambda s: s.stream_ordering)
        return await self.serializer.serialize(ordered)

    async def state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, fmt: str | None
    ) -> dict[str, Any]:
        ids = await self._visible_state_ids(requester, room_id)
        event_id = ids.get((event_type, state_key))
        if event_id is None:
            raise errors.not_found("Event not found")
        stored = await self.events.get_event(event_id)
        assert stored is not None
        serialized = (await self.serializer.serialize([stored]))[0]
        if fmt == "event":
            return serialized
        return serialized["content"]

    async def members(self, requester: Requester, room_id: str, args: dict[str, str]) -> dict[str, Any]:
        await self.rooms.room_version(room_id)
        await self.rooms.require_member(requester.user_id, room_id, allow_left=True)
        state, left_at = await self.rooms.state_at_membership(requester.user_id, room_id)
        at = args.get("at")
        if at:
            try:
                pos = RoomPosition.decode(at) if at.startswith("t") else RoomPosition(stream=SyncToken.decode(at).events)
            except TokenError:
                raise errors.MatrixError(400, "M_INVALID_PARAM", "Invalid 'at' token") from None
            # A sync token's position is inclusive (events up to it were delivered); a `t` token
            # from /messages marks a point between events, exclusive like pagination's `from`.
            point = pos.stream if pos.topological is None else pos.stream - 1
            upto = point if left_at is None else min(point, left_at)
            last = await self.events.latest_room_events(room_id, upto, 1)
            if last and last[-1].state_group is not None:
                state = await self.events.state_ids_for_group(last[-1].state_group, types=["m.room.member"])
        member_ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        stored = await self.events.get_events(member_ids)
        want = args.get("membership")
        not_want = args.get("not_membership")
        chosen = []
        for s in sorted(stored.values(), key=lambda s: s.stream_ordering):
            m = s.event.membership()
            if want and m != want:
                continue
            if not_want and m == not_want:
                continue
            chosen.append(s)
        return {"chunk": await self.serializer.serialize(chosen)}
