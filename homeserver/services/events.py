"""Events as clients see them: the client format, redaction on read, and history visibility.

The client form of an event is built once per event and shared by every
recipient (see DESIGN.md, "One message, many recipients"); only `unsigned.age`
and `unsigned.transaction_id` are added per response.
"""

from __future__ import annotations

import bisect
import copy
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core.redaction import prune_event_dict
from homeserver.storage.database import Database
from homeserver.storage.events import EventStore, StoredEvent


class _LRU(OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_item(self, key: str) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class EventSerializer:
    def __init__(self, events: EventStore, cache_size: int = 50_000) -> None:
        self.events = events
        self._cache = _LRU(cache_size)

    def invalidate(self, event_id: str) -> None:
        self._cache.pop(event_id, None)

    async def serialize(
        self,
        stored: Sequence[StoredEvent],
        *,
        txn_ids: dict[str, str] | None = None,
        include_room_id: bool = True,
        now_ms: int | None = None,
        relations: dict[str, dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Client-format events, in the order given.

        `relations` maps event IDs to their bundled aggregations (see
        RelationsService.bundle), placed in `unsigned["m.relations"]`.
        """
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        redactions_needed = [s.redacted_by for s in stored if s.redacted_by and self._cache.get_item(s.event_id) is None]
        redactions = await self.events.get_events([r for r in redactions_needed if r]) if redactions_needed else {}
        out = []
        for s in stored:
            base = self._cache.get_item(s.event_id)
            if base is None:
                redaction = redactions.get(s.redacted_by) if s.redacted_by else None
                base = self._build(s, redaction)
                self._cache.put(s.event_id, base)
            ev = dict(base)
            unsigned = dict(base.get("unsigned", {}))
            unsigned["age"] = max(0, now - base["origin_server_ts"])
            if txn_ids and s.event_id in txn_ids:
                unsigned["transaction_id"] = txn_ids[s.event_id]
            if relations and s.event_id in relations:
                unsigned["m.relations"] = relations[s.event_id]
            ev["unsigned"] = unsigned
            if not include_room_id:
                ev.pop("room_id", None)
            out.append(ev)
        return out

    def _build(self, s: StoredEvent, redaction: StoredEvent | None) -> dict[str, Any]:
        pdu = s.event.pdu
        rv = s.event.room_version
        if s.redacted_by:
            pdu = prune_event_dict(pdu, rv)
        ev: dict[str, Any] = {
            "type": pdu["type"],
            "content": pdu.get("content", {}),
            "sender": pdu["sender"],
            "event_id": s.event_id,
            "origin_server_ts": pdu.get("origin_server_ts", 0),
            "room_id": s.event.room_id,
        }
        if "state_key" in pdu:
            ev["state_key"] = pdu["state_key"]
        if pdu["type"] == "m.room.redaction":
            redacts = s.event.redacts
            if redacts:
                # Older clients read the top-level key, newer ones content.redacts.
                ev["redacts"] = redacts
                if not s.redacted_by and "redacts" not in ev["content"]:
                    ev["content"] = {**ev["content"], "redacts": redacts}
        unsigned = copy.deepcopy(s.unsigned) if s.unsigned else {}
        if s.redacted_by:
            if redaction is not None:
                r = redaction.event.pdu
                unsigned["redacted_because"] = {
                    "type": r["type"],
                    "content": r.get("content", {}),
                    "sender": r["sender"],
                    "event_id": redaction.event_id,
                    "origin_server_ts": r.get("origin_server_ts", 0),
                    "room_id": redaction.event.room_id,
                    **({"redacts": redaction.event.redacts} if redaction.event.redacts else {}),
                    "unsigned": {},
                }
        ev["unsigned"] = unsigned
        return ev


class VisibilityFilter:
    """History visibility (CS API § History visibility) applied to every read path."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def filter(self, user_id: str, room_id: str, events: Sequence[StoredEvent]) -> list[StoredEvent]:
        if not events:
            return []
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT stream_ordering, type, membership, json FROM events"
                " WHERE room_id = $1 AND NOT outlier AND"
                " ((type = 'm.room.member' AND state_key = $2) OR type = 'm.room.history_visibility')"
                " ORDER BY stream_ordering",
                room_id, user_id,
            )
            current = await conn.fetchval(
                "SELECT membership FROM room_memberships WHERE room_id = $1 AND user_id = $2", room_id, user_id
            )
        m_pos: list[int] = []
        m_val: list[str] = []
        h_pos: list[int] = []
        h_val: list[str] = []
        for r in rows:
            if r["type"] == "m.room.member":
                m_pos.append(r["stream_ordering"])
                m_val.append(r["membership"] or "leave")
            else:
                content = json.loads(r["json"]).get("content", {})
                hv = content.get("history_visibility")
                h_pos.append(r["stream_ordering"])
                h_val.append(hv if isinstance(hv, str) else "shared")
        out = []
        for s in events:
            pos = s.stream_ordering
            i = bisect.bisect_right(h_pos, pos) - 1
            hv = h_val[i] if i >= 0 else "shared"
            j = bisect.bisect_right(m_pos, pos) - 1
            membership = m_val[j] if j >= 0 else None
            own_membership = s.event.type == "m.room.member" and s.event.state_key == user_id
            if own_membership or _visible(hv, membership, current):
                out.append(s)
        return out


def _visible(history_visibility: str, membership_at_event: str | None, current: str | None) -> bool:
    if history_visibility == "world_readable":
        return True
    if membership_at_event == "join":
        return True
    if history_visibility == "shared" and current == "join":
        return True
    if history_visibility == "invited" and membership_at_event == "invite":
        return True
    return False


def event_ids(stored: Iterable[StoredEvent]) -> list[str]:
    return [s.event_id for s in stored]
